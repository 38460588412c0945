/**
 * Held-out care-coordination sentences for transcription tests and the bench. The vocabulary boost is trained on
 * src/transcription/care-corpus.txt, which must never contain these sentences (a test checks it), so the gain
 * measured here is a gain on unseen sentences.
 */
export const CARE_TEST_SENTENCES: readonly string[] = [
  'I need a refill of my lisinopril prescription',
  'Can I reschedule my appointment to Thursday afternoon',
  'Please call the pharmacy about my insurance',
  'The nurse said my blood pressure was too high',
  'I have been taking metformin twice a day with food',
  'My doctor wants to change the dosage of my medication',
  'Does my insurance cover the new prescription',
  'I missed my appointment at the clinic yesterday',
  'Can the pharmacy send the refill to my home',
  'I would like to speak with my care coordinator',
  'My blood sugar has been low in the mornings',
  'Please remind me about my appointment next week',
];

/** Words each test sentence must yield, used to assert a transcript "contains the key words". */
export const CARE_KEY_WORDS: Readonly<Record<string, readonly string[]>> = {
  'I need a refill of my lisinopril prescription': ['refill', 'prescription'],
  'Can I reschedule my appointment to Thursday afternoon': ['appointment', 'thursday'],
  'Please call the pharmacy about my insurance': ['pharmacy', 'insurance'],
};
