/**
 * Where a run of the CLI reads and writes: the process's streams for the bin, buffers for tests and embedding.
 */

/** A stream the CLI writes to. */
export interface CliWritable {
  write(chunk: string): unknown;
  /** True when it is a terminal (colours, progress, prompts). */
  isTTY?: boolean;
}

/** A stream the CLI reads a confirmation from. */
export interface CliReadable {
  /** True when it is a terminal: only then does `purge` ask before deleting. */
  isTTY?: boolean;
}

/** What {@link runCli} reads and writes. */
export interface CliIo {
  /** Results: tables, or one JSON document with `--json`. */
  stdout: CliWritable;
  /** Errors, warnings, progress and the worker's log lines. */
  stderr: CliWritable;
  /** Read for confirmations. @defaultValue none: confirmations are taken as refused on a TTY without a reader */
  stdin?: CliReadable & NodeJS.ReadableStream;
  /** The environment (`HORAE_DB`, `NO_COLOR`). @defaultValue `process.env` */
  env?: Readonly<Record<string, string | undefined>>;
  /** Where relative paths are resolved. @defaultValue `process.cwd()` */
  cwd?: string;
  /**
   * Waits for the signal that stops `horae worker` (the bin: SIGINT or SIGTERM). Resolves with the signal's name.
   * @defaultValue the process's SIGINT and SIGTERM
   */
  waitForStop?: () => Promise<string>;
}

/** The process's own streams, for the bin. */
export function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, cwd: process.cwd() };
}

/** Resolves at the first SIGINT or SIGTERM of this process. */
export function waitForProcessSignal(): Promise<string> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
