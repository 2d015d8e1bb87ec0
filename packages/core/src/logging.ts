/**
 * The logging middleware: one structured line per step of a task's life, through a pino-compatible logger.
 */
import { realClock } from './clock.js';
import type { WorkContext } from './context.js';
import { InvalidInputError, RunAbandoned, RunDeferred, TaskCancelledError } from './errors.js';
import type { Middleware } from './middleware.js';
import { quoteInput } from './quote-input.js';

/** A structured logger; pino's and bunyan's instances fit, and so does the console wrapper used by default. */
export interface Logger {
  /** Logs at debug level. */
  debug(obj: object, msg?: string): void;
  /** Logs at info level. */
  info(obj: object, msg?: string): void;
  /** Logs at warn level. */
  warn(obj: object, msg?: string): void;
  /** Logs at error level. */
  error(obj: object, msg?: string): void;
}

/** The levels of a {@link Logger}, least severe first. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Options of {@link logging}. */
export interface LoggingOptions {
  /** Where lines go. @defaultValue a logger that writes JSON-ish lines with `console` */
  logger?: Logger;
  /**
   * The least severe level written. Steps log at: scheduled, started → debug; succeeded, deferred, cancelled
   * → info; failed → error. @defaultValue 'info'
   */
  level?: LogLevel;
}

const LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** A {@link Logger} that writes through `console` (debug/info to stdout, warn/error to stderr). */
export const consoleLogger: Logger = {
  debug: (obj, msg) => console.debug(msg ?? '', obj),
  info: (obj, msg) => console.info(msg ?? '', obj),
  warn: (obj, msg) => console.warn(msg ?? '', obj),
  error: (obj, msg) => console.error(msg ?? '', obj),
};

/**
 * A middleware that logs each task's steps: `task scheduled` (taskId, workId, runAt, priority), and for each run
 * `task started`, `task succeeded` (durationMs), `task failed` (error), `task deferred` (runAt) or `task
 * cancelled`, each with taskId, workId and attempt.
 *
 * @remarks Works in any position of the chain. Placed before (outside) a middleware that wraps the work, it
 * logs what that wrapper made of the run (a retry shows as `deferred`); placed after, it logs the raw work.
 * Durations use the run's `ctx.clock`.
 * @param options - logger and level
 * @returns the middleware
 * @throws {@link InvalidInputError} on an unknown level
 */
export function logging(options: LoggingOptions = {}): Middleware {
  const logger = options.logger ?? consoleLogger;
  const level = options.level ?? 'info';
  const threshold = LEVELS.indexOf(level);
  if (threshold < 0) throw new InvalidInputError(`level must be one of ${LEVELS.join(', ')}, got ${quoteInput(level)}`);
  const log = (at: LogLevel, obj: object, msg: string): void => {
    if (LEVELS.indexOf(at) >= threshold) logger[at](obj, msg);
  };
  return (next) => async (ctx) => {
    const workId = ctx.workId;
    const work = ctx.work;
    const wrapped =
      work === undefined
        ? ctx
        : ctx.withWork(async (run: WorkContext) => {
            const clock = run.clock ?? realClock;
            const base = { taskId: run.taskId, workId, attempt: run.attempt };
            log('debug', base, 'task started');
            const startedAt = clock.now();
            try {
              const value = await work(run);
              log('info', { ...base, durationMs: clock.now() - startedAt }, 'task succeeded');
              return value;
            } catch (error) {
              const durationMs = clock.now() - startedAt;
              if (error instanceof RunDeferred) log('info', { ...base, durationMs, runAt: error.runAt, reason: error.message }, 'task deferred');
              else if (error instanceof TaskCancelledError || error instanceof RunAbandoned) log('info', { ...base, durationMs, reason: error.message }, 'task cancelled');
              else log('error', { ...base, durationMs, error }, 'task failed');
              throw error;
            }
          });
    const handle = await next(wrapped);
    log('debug', { taskId: handle.taskId, workId, runAt: handle.runAt, priority: handle.priority }, 'task scheduled');
    return handle;
  };
}
