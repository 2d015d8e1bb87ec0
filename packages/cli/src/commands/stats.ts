/**
 * `horae stats`: counts per state (one countByState), and per work on request, from a bounded scan of `list`.
 */
import { TaskState, type Repository } from '@horae/storage';
import type { CommandContext } from '../context.js';
import { usageError } from '../exit-codes.js';

/** The most tasks `--by-work` reads by default: the contract has no count per work, so it pages `list`. */
export const DEFAULT_SCAN = 10_000;

/** `horae stats [--by-work] [--scan N]`. */
export async function stats(ctx: CommandContext, options: { byWork?: boolean; scan?: string }): Promise<void> {
  const scan = options.scan === undefined ? DEFAULT_SCAN : Number(options.scan);
  if (options.scan !== undefined && (!/^\d+$/.test(options.scan) || scan < 1 || !Number.isSafeInteger(scan))) {
    throw usageError(`--scan must be a positive integer; got ${JSON.stringify(options.scan)}`);
  }
  const result = await ctx.withRepository(async (repository) => {
    const byState = await repository.countByState();
    const byWork = options.byWork === true ? await countByWork(repository, scan) : null;
    return { byState, byWork };
  });
  const total = Object.values(result.byState).reduce((a, b) => a + b, 0);
  const { out } = ctx;
  if (out.json) {
    out.document({ total, byState: result.byState, ...(result.byWork === null ? {} : { byWork: result.byWork }) });
    return;
  }
  out.table(['STATE', 'TASKS'], [...Object.values(TaskState).map((s) => [out.state(s), String(result.byState[s])]), ['total', String(total)]]);
  if (result.byWork !== null) {
    const { works, scanned, complete } = result.byWork;
    out.line();
    out.table(
      ['WORK', ...Object.values(TaskState)],
      Object.entries(works)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([work, counts]) => [work, ...Object.values(TaskState).map((s) => String(counts[s] ?? 0))]),
      '(no tasks)',
    );
    if (!complete) out.note(out.yellow(`per-work counts cover the ${scanned} oldest tasks only (--scan ${scan}); the per-state counts above are exact`));
  }
}

async function countByWork(repository: Repository, scan: number): Promise<{ works: Record<string, Partial<Record<TaskState, number>>>; scanned: number; complete: boolean }> {
  const works: Record<string, Partial<Record<TaskState, number>>> = {};
  let scanned = 0;
  let after: string | null = null;
  for (;;) {
    const page = await repository.list({ limit: Math.min(1000, scan - scanned), after });
    for (const task of page.tasks) {
      const counts = (works[task.workId] ??= {});
      counts[task.state] = (counts[task.state] ?? 0) + 1;
    }
    scanned += page.tasks.length;
    after = page.next;
    if (after === null) return { works, scanned, complete: true };
    if (scanned >= scan) return { works, scanned, complete: false };
  }
}
