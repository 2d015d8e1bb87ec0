/**
 * `horae tasks ls | show | cancel`.
 */
import { TaskNotFoundError, TaskState, type Repository, type TaskAttempt, type TaskInfo } from '@horae/storage';
import type { CommandContext } from '../context.js';
import { CliError, EXIT_FAILED, usageError } from '../exit-codes.js';
import { formatDate, oneLine } from '../output.js';
import { toSearchQuery, type SearchOptions } from '../search-options.js';
import { listTasks, type TaskQuery } from '../task-query.js';

const STATES = Object.values(TaskState) as string[];

/** The options of `tasks ls` as commander gives them. */
export interface TasksLsOptions extends SearchOptions {
  state?: string[];
  work?: string;
  limit?: string;
  after?: string;
}

/** Parses `--limit`: an integer from 1 to 1000. */
export function parseLimit(text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1 || n > 1000) throw usageError(`--limit must be an integer from 1 to 1000; got ${JSON.stringify(text)}`);
  return n;
}

/** `horae tasks ls`. */
export async function tasksLs(ctx: CommandContext, options: TasksLsOptions): Promise<void> {
  const states = [...new Set(options.state ?? [])];
  for (const state of states) {
    if (!STATES.includes(state)) throw usageError(`unknown --state ${JSON.stringify(state)}: one of ${STATES.join(', ')}`);
  }
  const query: TaskQuery = {
    states: states as TaskState[],
    limit: parseLimit(options.limit, 50),
    ...(options.work === undefined ? {} : { workId: options.work }),
    ...(options.after === undefined ? {} : { after: options.after }),
    search: toSearchQuery(options, Date.now()),
  };
  const page = await ctx.withRepository((repository) => listTasks(repository, query));
  const { out } = ctx;
  if (out.json) {
    out.document({ tasks: page.tasks, next: page.next });
    return;
  }
  out.table(
    ['ID', 'WORK', 'STATE', 'ATTEMPT', 'SCHEDULED', 'UPDATED', 'LAST ERROR'],
    page.tasks.map((t) => [t.id, t.workId, out.state(t.state), `${t.attempt}/${t.maxAttempts}`, formatDate(t.scheduledAt), formatDate(t.updatedAt), t.lastError === null ? '' : oneLine(t.lastError.message, 60)]),
    '(no tasks)',
  );
  if (page.next !== null) out.note(`more: horae tasks ls … --after ${page.next}`);
}

/** `horae tasks show <id>`. */
export async function tasksShow(ctx: CommandContext, id: string): Promise<void> {
  const { task, attempts } = await ctx.withRepository(async (repository) => {
    const found = await getTask(repository, id);
    return { task: found, attempts: await repository.listAttempts(id) };
  });
  const { out } = ctx;
  if (out.json) {
    out.document({ task, attempts });
    return;
  }
  printTask(ctx, task);
  out.line();
  out.line(out.bold(`Attempts (${attempts.length})`));
  out.table(
    ['RUN', 'ATTEMPT', 'OUTCOME', 'NODE', 'STARTED', 'ENDED', 'ERROR'],
    attempts.map((a) => [String(a.run), String(a.attempt), outcome(ctx, a), a.node, formatDate(a.startedAt), formatDate(a.endedAt), a.error === null ? '' : oneLine(errorText(a.error), 70)]),
    '(no attempt: the task never started)',
  );
  for (const a of attempts) {
    if (a.error?.stack !== undefined) {
      out.line();
      out.line(out.dim(`run ${a.run} stack:`));
      out.line(a.error.stack);
    }
  }
}

function outcome(ctx: CommandContext, attempt: TaskAttempt): string {
  const colours: Record<string, (text: string) => string> = {
    succeeded: (t) => ctx.out.green(t),
    failed: (t) => ctx.out.red(t),
    'lease-expired': (t) => ctx.out.red(t),
    retried: (t) => ctx.out.yellow(t),
    running: (t) => ctx.out.yellow(t),
  };
  return (colours[attempt.outcome] ?? ((t: string) => t))(attempt.outcome);
}

function errorText(error: { message: string; name?: string; code?: string }): string {
  return `${error.name ?? 'Error'}${error.code === undefined ? '' : ` [${error.code}]`}: ${error.message}`;
}

function printTask(ctx: CommandContext, t: TaskInfo): void {
  const { out } = ctx;
  out.fields([
    ['id', t.id],
    ['work', t.workId],
    ['state', out.state(t.state)],
    ['kind', t.kind + (t.scheduleName === null ? '' : ` (schedule ${t.scheduleName})`)],
    ['attempt', `${t.attempt} of ${t.maxAttempts} (claims ${t.claims})`],
    ['priority', String(t.priority)],
    ['scheduled', formatDate(t.scheduledAt)],
    ['created', formatDate(t.createdAt)],
    ['updated', formatDate(t.updatedAt)],
    ['unique key', t.uniqueKey ?? '-'],
    ['param', oneLine(JSON.stringify(t.param), 200)],
    ['last error', t.lastError === null ? '-' : out.red(errorText(t.lastError))],
    ['progress', t.progress === null ? '-' : `${t.progress.completed}/${t.progress.total}${t.progress.message === undefined ? '' : ` ${t.progress.message}`} at ${formatDate(t.progress.at)}`],
    ['lease', t.lease === null ? '-' : `${t.lease.owner} until ${formatDate(t.lease.until)}${t.lease.started ? '' : ' (claimed ahead, not started)'}`],
  ]);
}

async function getTask(repository: Repository, id: string): Promise<TaskInfo> {
  try {
    return await repository.getById(id);
  } catch (error) {
    if (error instanceof TaskNotFoundError) throw new CliError(`no task has the id ${JSON.stringify(id)}`, EXIT_FAILED, 'TASK_NOT_FOUND');
    throw error;
  }
}

/** `horae tasks cancel <id>`: exit 1 when the task had already ended (nothing was cancelled). */
export async function tasksCancel(ctx: CommandContext, id: string, options: { reason?: string }): Promise<void> {
  const result = await ctx.withRepository(async (repository) => {
    await getTask(repository, id);
    try {
      return await repository.markAsCancelled(id, options.reason === undefined ? {} : { reason: options.reason });
    } catch (error) {
      if (error instanceof TaskNotFoundError) throw new CliError(`no task has the id ${JSON.stringify(id)}`, EXIT_FAILED, 'TASK_NOT_FOUND');
      throw error;
    }
  });
  const { out } = ctx;
  if (out.json) out.document({ cancelled: result.cancelled, task: result.task });
  if (!result.cancelled) {
    throw new CliError(`task ${id} had already ended (${result.task.state}): nothing was cancelled`, EXIT_FAILED, 'ALREADY_ENDED');
  }
  if (!out.json) out.line(`cancelled task ${id} (${result.task.workId})`);
}
