export interface CoordinatorLoad {
  coordinatorId: string;
  assignedPatients: number;
  isAvailable: boolean;
}

/**
 * Until routing rules exist, a new patient goes to the least-loaded available coordinator; ties go to the
 * lowest id so the choice is deterministic and testable.
 */
export function pickLeastLoaded(loads: readonly CoordinatorLoad[]): string | null {
  let best: CoordinatorLoad | null = null;
  for (const load of loads) {
    if (!load.isAvailable) continue;
    if (
      best === null ||
      load.assignedPatients < best.assignedPatients ||
      (load.assignedPatients === best.assignedPatients && load.coordinatorId < best.coordinatorId)
    ) {
      best = load;
    }
  }
  return best?.coordinatorId ?? null;
}
