import { describe, expect, it } from 'vitest';
import { parseTimedOutput } from './pocketsphinx.ts';

// Captured from `pocketsphinx_continuous -infile two.wav -time yes` (Debian 12, 5prealpha): two utterances split by a pause.
const TWO_UTTERANCES = `please call the pharmacy about my insurance
<s> 0.000 0.270 0.999900
please 0.280 0.620 0.995908
call 0.630 0.960 1.000000
the 0.970 1.050 0.988663
pharmacy 1.060 1.720 1.000000
about 1.730 2.010 0.992229
my 2.020 2.240 0.760688
insurance 2.250 2.790 1.000000
</s> 2.800 3.250 1.000000
i need a refill of my prescription
<s> 5.990 6.090 1.000100
i 6.100 6.240 0.724744
need 6.250 6.480 0.295898
a 6.490 6.510 0.118559
refill 6.520 6.950 0.975892
of 6.960 7.020 0.809188
my 7.030 7.310 1.000000
prescription 7.320 8.150 1.000000
</s> 8.160 8.250 1.000000
`;

describe('parseTimedOutput', () => {
  it('makes one segment per utterance with the first and last word times', () => {
    expect(parseTimedOutput(TWO_UTTERANCES)).toEqual([
      { startSec: 0.28, endSec: 2.79, text: 'please call the pharmacy about my insurance' },
      { startSec: 6.1, endSec: 8.15, text: 'i need a refill of my prescription' },
    ]);
  });

  it('drops fillers and folds pronunciation variants', () => {
    const output = ['and the clinic', '<s> 0.000 0.140 0.999400', 'and(2) 0.150 0.360 0.260057', '<sil> 0.370 0.500 0.5',
      '[NOISE] 0.510 0.600 0.4', 'the 0.610 0.700 0.9', '++BREATH++ 0.700 0.800 0.9', 'clinic 0.810 1.200 0.9', '</s> 1.210 1.300 1.0'].join('\n');
    expect(parseTimedOutput(output)).toEqual([{ startSec: 0.15, endSec: 1.2, text: 'and the clinic' }]);
  });

  it('skips utterances in which only fillers were heard', () => {
    const output = ['', '<s> 0.000 0.100 1.0', '<sil> 0.110 0.900 1.0', '</s> 0.910 1.000 1.0', 'yes', '<s> 2.000 2.100 1.0',
      'yes 2.110 2.400 0.9', '</s> 2.410 2.500 1.0'].join('\n');
    expect(parseTimedOutput(output)).toEqual([{ startSec: 2.11, endSec: 2.4, text: 'yes' }]);
  });

  it('returns no segments for empty output', () => {
    expect(parseTimedOutput('')).toEqual([]);
    expect(parseTimedOutput('\n\n')).toEqual([]);
  });
});
