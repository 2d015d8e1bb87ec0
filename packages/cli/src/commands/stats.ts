/**
 * `horae stats`: counts per state (one countByState), and per work on request, from the repository's search
 * capability (`taskSearch().countTasks()`, exact, the 1,000 works with the most tasks).
 */
import { isTaskSearchProvider, MAX_COUNTED_WORKS, TaskState, type WorkCount } from '@horae/storage';
import type { CommandContext } from '../context.js';
import { CliError, EXIT_FAILED } from '../exit-codes.js';

/** `horae stats [--by-work]`. */
export async function stats(ctx: CommandContext, options: { byWork?: boolean }): Promise<void> {
  const result = await ctx.withRepository(async (repository) => {
    const byState = await repository.countByState();
    if (options.byWork !== true) return { byState, byWork: null };
    if (!isTaskSearchProvider(repository)) throw new CliError('this repository cannot count per work (it has no TaskSearch capability)', EXIT_FAILED);
    const counts = await repository.taskSearch().countTasks();
    return { byState, byWork: counts.byWork };
  });
  const total = Object.values(result.byState).reduce((a, b) => a + b, 0);
  const listed = result.byWork === null ? 0 : result.byWork.reduce((sum, work) => sum + Object.values(work.byState).reduce((a, b) => a + b, 0), 0);
  // Works past the bound are left out of byWork (their tasks are still in the per-state counts).
  const complete = listed === total;
  const { out } = ctx;
  if (out.json) {
    out.document({ total, byState: result.byState, ...(result.byWork === null ? {} : { byWork: { works: toRecord(result.byWork), complete } }) });
    return;
  }
  out.table(['STATE', 'TASKS'], [...Object.values(TaskState).map((s) => [out.state(s), String(result.byState[s])]), ['total', String(total)]]);
  if (result.byWork !== null) {
    out.line();
    out.table(
      ['WORK', ...Object.values(TaskState)],
      result.byWork.map((work) => [work.workId, ...Object.values(TaskState).map((s) => String(work.byState[s]))]),
      '(no tasks)',
    );
    if (!complete) out.note(out.yellow(`per-work counts list the ${MAX_COUNTED_WORKS} works with the most tasks; the per-state counts above count every task`));
  }
}

/** Per work, the states that have tasks (the JSON stays small for works with few states). */
function toRecord(works: readonly WorkCount[]): Record<string, Partial<Record<TaskState, number>>> {
  return Object.fromEntries(works.map((work) => [work.workId, Object.fromEntries(Object.entries(work.byState).filter(([, n]) => n > 0))]));
}
