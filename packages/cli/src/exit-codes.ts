/**
 * The exit codes of `horae`, used the same way by every command: scripts branch on them.
 */
import { HoraeError } from '@horae/core';

/** The command did what it was asked. */
export const EXIT_OK = 0;
/** The operation failed or found nothing: an unknown id or name, a task already ended, a problem `doctor` found. */
export const EXIT_FAILED = 1;
/** The command line is wrong: an unknown command or option, a missing argument, a value that makes no sense. */
export const EXIT_USAGE = 2;
/** The database cannot be reached or opened: a refused connection, a missing SQLite file, an unknown `--db` scheme. */
export const EXIT_CONNECT = 3;

/** An error a command ends with, carrying the exit code it stands for. */
export class CliError extends Error {
  /**
   * @param message - what to tell the operator (already free of secrets)
   * @param exitCode - one of the EXIT_* codes
   * @param code - a stable machine-readable code for `--json`
   */
  constructor(
    message: string,
    readonly exitCode: number,
    readonly code: string = exitCode === EXIT_USAGE ? 'USAGE' : exitCode === EXIT_CONNECT ? 'CANNOT_CONNECT' : 'FAILED',
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CliError';
  }
}

/** A usage error (exit 2). */
export function usageError(message: string): CliError {
  return new CliError(message, EXIT_USAGE, 'USAGE');
}

/** The code to report for an error thrown by the storage layer, or a generic one. */
export function codeOf(error: unknown): string {
  if (error instanceof CliError) return error.code;
  if (error instanceof HoraeError) return error.code;
  return 'FAILED';
}
