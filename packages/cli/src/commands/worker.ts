/**
 * `horae worker <module>`: runs the works a module exports on the `--db` database until SIGINT or SIGTERM, then
 * stops gracefully (running work gets `--stop-timeout` to finish; what does not finish goes back to Initialized).
 */
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { WorkRegistry } from '@horae/storage';
import type { CommandContext } from '../context.js';
import { CliError, EXIT_FAILED, usageError } from '../exit-codes.js';
import { parseDuration } from '../duration.js';
import { waitForProcessSignal } from '../io.js';

/** What the module gave: a registry, or defineWork results. */
type Works = { registry: WorkRegistry } | { works: readonly { id: string; run: unknown }[] };

function isRegistry(value: unknown): value is WorkRegistry {
  if (value instanceof WorkRegistry) return true;
  const candidate = value as Partial<WorkRegistry> | null;
  return candidate !== null && typeof candidate === 'object' && typeof candidate.register === 'function' && typeof candidate.has === 'function' && typeof candidate.get === 'function';
}

function isWorkList(value: unknown): value is readonly { id: string; run: unknown }[] {
  return Array.isArray(value) && value.every((w: unknown) => w !== null && typeof w === 'object' && typeof (w as { id?: unknown }).id === 'string' && typeof (w as { run?: unknown }).run === 'function');
}

/** Finds the works a module exports: `registry`, `works`, or a default export of either. */
export function worksOf(module: Record<string, unknown>, specifier: string): Works {
  for (const value of [module.registry, module.works, module.default]) {
    if (isRegistry(value)) return { registry: value };
    if (isWorkList(value)) return { works: value };
  }
  throw new CliError(
    `${specifier} exports no works: export a WorkRegistry (as \`registry\` or default) or an array of defineWork() results (as \`works\` or default)`,
    EXIT_FAILED,
    'NO_WORKS',
  );
}

/** The options of `horae worker`. */
export interface WorkerOptions {
  nodeId?: string;
  concurrency?: string;
  stopTimeout?: string;
}

/** `horae worker <module>`. */
export async function worker(ctx: CommandContext, specifier: string, options: WorkerOptions): Promise<void> {
  const stopTimeoutMs = parseDuration(options.stopTimeout ?? '30s', '--stop-timeout');
  const concurrency = options.concurrency === undefined ? undefined : Number(options.concurrency);
  if (concurrency !== undefined && (!Number.isSafeInteger(concurrency) || concurrency < 1)) throw usageError(`--concurrency must be an integer ≥ 1; got ${JSON.stringify(options.concurrency)}`);
  const nodeId = options.nodeId ?? `${hostname()}-${process.pid}`;
  const target = ctx.target();
  const url = /^[a-z][a-z0-9+.-]*:/i.test(specifier) && !/^[a-z]:[\\/]/i.test(specifier) ? specifier : pathToFileURL(resolve(ctx.cwd, specifier)).href;
  let module: Record<string, unknown>;
  try {
    module = (await import(url)) as Record<string, unknown>;
  } catch (error) {
    throw new CliError(`cannot import ${specifier}: ${error instanceof Error ? error.message : String(error)}`, EXIT_FAILED, 'MODULE_NOT_LOADED', { cause: error });
  }
  const works = worksOf(module, specifier);
  const { createHorae } = await import('horae');
  await ctx.withRepository(
    async (repository) => {
      const horae = createHorae({ repository, nodeId, ...(concurrency === undefined ? {} : { concurrency }), ...works } as Parameters<typeof createHorae>[0]);
      const log = (event: string, text: string): void => {
        ctx.io.stderr.write(`${new Date().toISOString()} ${event} ${text}\n`);
      };
      const events = horae.events;
      events.on('task:started', ({ task }) => log('task:started', `${task.id} work=${task.workId} attempt=${task.attempt}/${task.maxAttempts}`));
      events.on('task:succeeded', ({ task }) => log('task:succeeded', `${task.id} work=${task.workId}`));
      events.on('task:retried', ({ task, error, runAt }) => log('task:retried', `${task.id} work=${task.workId} next=${runAt.toISOString()} error=${messageOf(error)}`));
      events.on('task:failed', ({ task, error }) => log('task:failed', `${task.id} work=${task.workId} error=${messageOf(error)}`));
      events.on('task:cancelled', ({ taskId, reporter }) => {
        if (reporter) log('task:cancelled', taskId);
      });
      events.on('task:reclaimed', ({ task }) => log('task:reclaimed', `${task.id} work=${task.workId} state=${task.state}`));
      events.on('repository:error', ({ operation, error }) => log('repository:error', `${operation}: ${ctx.mask(error.message)}`));
      await horae.start();
      log('worker:started', `node=${nodeId} db=${target.display}`);
      const signal = await (ctx.io.waitForStop ?? waitForProcessSignal)();
      log('worker:stopping', `${signal}: waiting up to ${stopTimeoutMs} ms for running work`);
      await horae.stop({ timeoutMs: stopTimeoutMs });
      log('worker:stopped', `node=${nodeId}`);
      if (ctx.out.json) ctx.out.document({ stopped: true, nodeId, signal });
    },
    { create: true },
  );
}

function messageOf(error: unknown): string {
  return JSON.stringify(error instanceof Error ? error.message : String(error));
}
