/**
 * `horae schedules ls | pause | resume | trigger | remove`, over the ScheduleStore capability.
 */
import { ScheduleNotFoundError, Schedules, isScheduleStore, type Repository, type Schedule } from '@horae/storage';
import type { CommandContext } from '../context.js';
import { CliError, EXIT_FAILED } from '../exit-codes.js';
import { formatDate } from '../output.js';

async function withSchedules<T>(ctx: CommandContext, use: (schedules: Schedules) => Promise<T>): Promise<T> {
  return ctx.withRepository(async (repository: Repository) => {
    if (!isScheduleStore(repository)) {
      throw new CliError(`this database (${ctx.target().adapter}) does not persist recurring schedules: its repository has no ScheduleStore`, EXIT_FAILED, 'NO_SCHEDULE_STORE');
    }
    try {
      return await use(new Schedules({ repository }));
    } catch (error) {
      if (error instanceof ScheduleNotFoundError) throw new CliError(`no schedule is named ${JSON.stringify(error.scheduleName)}`, EXIT_FAILED, 'SCHEDULE_NOT_FOUND');
      throw error;
    }
  });
}

function spec(schedule: Schedule): string {
  return 'cron' in schedule.spec ? `cron ${schedule.spec.cron} (${schedule.spec.timezone})` : `every ${schedule.spec.everyMs}ms`;
}

/** `horae schedules ls`. */
export async function schedulesLs(ctx: CommandContext): Promise<void> {
  const list = await withSchedules(ctx, (s) => s.list());
  const { out } = ctx;
  if (out.json) {
    out.document({ schedules: list });
    return;
  }
  out.table(
    ['NAME', 'WORK', 'SPEC', 'STATUS', 'NEXT RUN', 'LAST OCCURRENCE', 'LAST TASK'],
    list.map((s) => [s.name, s.workId, spec(s), s.paused ? ctx.out.yellow('paused') : 'active', s.paused ? '-' : formatDate(s.nextRunAt), formatDate(s.lastOccurrenceAt), s.lastTaskId ?? '-']),
    '(no schedules)',
  );
}

/** `horae schedules pause|resume|trigger|remove <name>`. */
export async function scheduleAction(ctx: CommandContext, action: 'pause' | 'resume' | 'trigger' | 'remove', name: string): Promise<void> {
  const schedule = await withSchedules(ctx, async (s) => {
    switch (action) {
      case 'pause':
        return s.pause(name);
      case 'resume':
        return s.resume(name);
      case 'trigger':
        return s.runSoon(name, 0);
      case 'remove':
        await s.remove(name);
        return null;
    }
  });
  const { out } = ctx;
  if (out.json) {
    out.document(schedule === null ? { removed: name } : { schedule });
    return;
  }
  const said = {
    pause: `paused schedule ${name}: no occurrence runs until it is resumed`,
    resume: `resumed schedule ${name}: next run ${formatDate(schedule?.nextRunAt)}`,
    trigger: `schedule ${name} is due now: the next tick of a running node's schedule loop starts it, then its regular occurrences follow`,
    remove: `removed schedule ${name} (tasks it already created are left alone)`,
  }[action];
  out.line(said);
}
