/**
 * What a storage middleware knows of its repository's health: whether it is in an outage, and the reports of it,
 * rate-limited so that an outage makes a few events rather than one per failed try.
 */
import type { Clock } from '@horae/core';
import type { RepositoryError } from '../contract/errors.js';
import type { RepositoryErrorEvent, RepositoryRecoveredEvent } from './events.js';

/** The least time between two `repository:error` reports of one operation, when not told. */
export const DEFAULT_REPOSITORY_ERROR_INTERVAL_MS = 10_000;

/** One failed try, as its caller knows it (the report adds the count of failures it stands for). */
export type RepositoryFailure = Omit<RepositoryErrorEvent, 'suppressed'>;

/** Options of {@link RepositoryHealth}. */
export interface RepositoryHealthOptions {
  /** The clock the intervals are measured on. */
  clock: Clock;
  /** The least time between two reports of one operation; 0 reports every failure. */
  intervalMs: number;
  /** Emits a `repository:error` report. */
  report: (event: RepositoryErrorEvent) => void;
  /** Emits the end of an outage. */
  recovered: (event: RepositoryRecoveredEvent) => void;
}

/** Per operation: when it was last reported, and how many of its failures were not reported since. */
interface OperationReports {
  reportedAt: number;
  suppressed: number;
}

/**
 * Tracks outages of one repository and reports them.
 *
 * Rules:
 * - An outage starts with a failed try (a RepositoryError) while none is known, and ends when a call lands.
 * - The first failure of each operation (`insert`, `claim`, `getUpdatedSince`, ...) in an outage is reported at
 *   once; later ones of that operation are reported at most once per `intervalMs`, each report carrying the count
 *   of the failures it stands for that were not reported (`suppressed`). The state of one operation never delays
 *   another's first report.
 * - The end of an outage is reported once (`repository:recovered`), with the count of failures in it.
 * - A listener that throws does not disturb the caller.
 */
export class RepositoryHealth {
  readonly #options: RepositoryHealthOptions;
  /** The outage under way, if any. */
  #outage: { since: number; failures: number; reported: number; lastError: RepositoryError } | undefined = undefined;
  readonly #operations = new Map<string, OperationReports>();

  /** @param options - the clock, the interval and the emitters */
  constructor(options: RepositoryHealthOptions) {
    this.#options = options;
  }

  /** Whether a try failed with an outage and no call landed since. */
  get down(): boolean {
    return this.#outage !== undefined;
  }

  /** The last outage error of the outage under way. */
  get lastError(): RepositoryError | undefined {
    return this.#outage?.lastError;
  }

  /**
   * A try failed with an outage: reports it, or counts it for the next report of its operation.
   *
   * @param failure - what failed
   */
  failed(failure: RepositoryFailure): void {
    const now = this.#options.clock.now();
    const outage = (this.#outage ??= { since: now, failures: 0, reported: 0, lastError: failure.error });
    outage.failures++;
    outage.lastError = failure.error;
    const reports = this.#operations.get(failure.operation);
    if (reports !== undefined && now - reports.reportedAt < this.#options.intervalMs) {
      reports.suppressed++;
      return;
    }
    const suppressed = reports?.suppressed ?? 0;
    this.#operations.set(failure.operation, { reportedAt: now, suppressed: 0 });
    outage.reported++;
    try {
      this.#options.report({ ...failure, suppressed });
    } catch {
      // A listener's failure must not turn an outage into a lost write.
    }
  }

  /** A call landed: the outage under way, if any, is over (reported once). */
  landed(): void {
    const outage = this.#outage;
    if (outage === undefined) return;
    this.#outage = undefined;
    this.#operations.clear();
    try {
      this.#options.recovered({
        since: new Date(outage.since),
        downMs: this.#options.clock.now() - outage.since,
        failures: outage.failures,
        reported: outage.reported,
      });
    } catch {
      // A listener's failure must not disturb the write that landed.
    }
  }
}
