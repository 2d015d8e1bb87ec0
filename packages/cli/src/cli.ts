/**
 * The `horae` command line: commander parses it, each command runs in its own context, and every outcome ends in
 * one of the documented exit codes.
 */
import { Command, CommanderError, Option } from 'commander';
import { HoraeError } from '@horae/core';
import { CommandContext, type GlobalOptions } from './context.js';
import { DATABASE_FORMS } from './database-url.js';
import { CliError, EXIT_FAILED, EXIT_OK, EXIT_USAGE, codeOf } from './exit-codes.js';
import type { CliIo } from './io.js';
import { doctor } from './commands/doctor.js';
import { hooksDead, hooksRedrive } from './commands/hooks.js';
import { migrate } from './commands/migrate.js';
import { purge } from './commands/purge.js';
import { scheduleAction, schedulesLs } from './commands/schedules.js';
import { stats } from './commands/stats.js';
import { tasksCancel, tasksLs, tasksShow } from './commands/tasks.js';
import { worker } from './commands/worker.js';

const EXIT_CODES_HELP = `
Exit codes:
  0  ok
  1  the operation failed or found nothing (unknown id or name, task already ended, doctor found a problem)
  2  usage error (unknown command or option, missing argument, a value that makes no sense)
  3  cannot connect (no --db, unknown scheme, unreachable server, missing SQLite file)

Database (--db or HORAE_DB): ${DATABASE_FORMS}`;

/**
 * Runs the `horae` command line.
 *
 * @param argv - the arguments after the program name (`process.argv.slice(2)`)
 * @param io - where to read and write
 * @returns the exit code: 0 ok, 1 the operation failed or found nothing, 2 usage error, 3 cannot connect
 *
 * ### Examples
 * ```ts
 * const chunks: string[] = [];
 * const sink = { write: (s: string) => chunks.push(s) };
 * const code = await runCli(['stats', '--db', 'sqlite:./horae.db', '--json'], { stdout: sink, stderr: sink });
 * ```
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let context: CommandContext | undefined;
  const contextOf = (command: Command): CommandContext => {
    context = new CommandContext(io, command.optsWithGlobals<GlobalOptions>());
    return context;
  };
  const program = buildProgram(io, contextOf);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT_OK;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end here too, with exit code 0; commander already printed the message.
      return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    const json = context?.out.json ?? argv.includes('--json');
    const exitCode = error instanceof CliError ? error.exitCode : EXIT_FAILED;
    const raw = error instanceof Error ? error.message : String(error);
    const message = context === undefined ? raw : context.mask(raw);
    io.stderr.write(`horae: ${message}\n`);
    if (!(error instanceof CliError) && !(error instanceof HoraeError) && error instanceof Error && error.stack !== undefined && (io.env ?? process.env).HORAE_DEBUG !== undefined) {
      io.stderr.write(`${context === undefined ? error.stack : context.mask(error.stack)}\n`);
    }
    if (json && context?.out.printed !== true) io.stdout.write(`${JSON.stringify({ error: { code: codeOf(error), message, exitCode } }, null, 2)}\n`);
    return exitCode;
  }
}

function buildProgram(io: CliIo, contextOf: (command: Command) => CommandContext): Command {
  const program = new Command('horae')
    .description('Inspect and operate a Horae database: tasks, stats, schedules, hook dead letters, purge, migrations; run a worker.')
    .addOption(new Option('--db <url>', 'the database (default: HORAE_DB)'))
    .option('--json', 'print one JSON document instead of tables')
    .exitOverride()
    .configureOutput({ writeOut: (s) => void io.stdout.write(s), writeErr: (s) => void io.stderr.write(s) })
    .showHelpAfterError('(run horae --help for the commands)')
    .addHelpText('after', EXIT_CODES_HELP);
  const sub = (parent: Command, name: string, description: string): Command =>
    parent
      .command(name)
      .description(description)
      .exitOverride()
      .configureOutput({ writeOut: (s) => void io.stdout.write(s), writeErr: (s) => void io.stderr.write(s) })
      .showHelpAfterError();

  const tasks = sub(program, 'tasks', 'list, show and cancel tasks');
  sub(tasks, 'ls', 'list tasks, oldest first')
    .option('--state <state>', 'only tasks in this state (Initialized, Working, Done, Cancelled, Failed); repeat for several', (v: string, all: string[] = []) => [...all, v])
    .option('--work <workId>', 'only tasks of this work')
    .option('--limit <n>', 'page size, 1 to 1000', '50')
    .option('--after <cursor>', 'the page after this cursor (printed by the previous page)')
    .option('--param <path=value>', 'only tasks whose param holds value at path: customer.id=42, to=ada@example.com, items.0.sku="A1", ["a.b"]=true')
    .option('--id-prefix <prefix>', 'only tasks whose id starts with this')
    .option('--unique-key <key>', 'only tasks with this uniqueKey')
    .option('--schedule <name>', 'only occurrences of this recurring schedule')
    .option('--created-from <time>', 'created at or after: an ISO 8601 time, or a duration ago (2h, 7d)')
    .option('--created-to <time>', 'created before')
    .option('--due-from <time>', 'due (scheduledAt) at or after')
    .option('--due-to <time>', 'due before')
    .option('--ended-from <time>', 'ended (Done, Cancelled, Failed) at or after')
    .option('--ended-to <time>', 'ended before')
    .action((options: Parameters<typeof tasksLs>[1], command: Command) => tasksLs(contextOf(command), options));
  sub(tasks, 'show', 'a task: its state, last error, progress, lease, and every attempt')
    .argument('<id>', 'the task id')
    .action((id: string, _options: unknown, command: Command) => tasksShow(contextOf(command), id));
  sub(tasks, 'cancel', 'cancel a task that has not ended (exit 1 if it had already ended)')
    .argument('<id>', 'the task id')
    .option('--reason <text>', 'why, recorded with the cancel')
    .action((id: string, options: { reason?: string }, command: Command) => tasksCancel(contextOf(command), id, options));

  sub(program, 'stats', 'tasks per state, and per work with --by-work (exact)')
    .option('--by-work', 'also count per work (the 1000 works with the most tasks)')
    .action((options: { byWork?: boolean }, command: Command) => stats(contextOf(command), options));

  const schedules = sub(program, 'schedules', 'recurring schedules (SQLite, PostgreSQL)');
  sub(schedules, 'ls', 'list schedules').action((_options: unknown, command: Command) => schedulesLs(contextOf(command)));
  const describe = {
    pause: 'pause a schedule: no occurrence runs until it is resumed',
    resume: 'resume a schedule from its next occurrence after now',
    trigger: 'make the next run due now (a running node starts it at its next schedule tick)',
    remove: 'delete a schedule (tasks it created stay)',
  } as const;
  for (const action of ['pause', 'resume', 'trigger', 'remove'] as const) {
    sub(schedules, action, describe[action])
      .argument('<name>', 'the schedule name')
      .action((name: string, _options: unknown, command: Command) => scheduleAction(contextOf(command), action, name));
  }

  const hooks = sub(program, 'hooks', 'status hook dead letters');
  sub(hooks, 'dead', 'list dead deliveries')
    .option('--hook <name>', 'only deliveries of this hook')
    .option('--limit <n>', 'page size, 1 to 1000', '100')
    .option('--after-seq <seq>', 'the page after this seq')
    .action((options: { hook?: string; limit?: string; afterSeq?: string }, command: Command) => hooksDead(contextOf(command), options));
  sub(hooks, 'redrive', 'send a dead delivery again (pending, attempts reset, due now)')
    .argument('<deliveryId>', 'the delivery id')
    .action((id: string, _options: unknown, command: Command) => hooksRedrive(contextOf(command), id));

  sub(program, 'purge', 'delete Done, Cancelled and Failed tasks older than a duration, with their attempts')
    .option('--older-than <duration>', 'last updated longer ago than this: 7d, 12h, 30m, 45s, 2w')
    .option('-y, --yes', 'do not ask for confirmation on a terminal')
    .action((options: { olderThan?: string; yes?: boolean }, command: Command) => purge(contextOf(command), options));

  sub(program, 'migrate', 'bring the schema to this version of horae (adapters also migrate when they open)')
    .option('--dry-run', 'report the stored and the supported schema versions; write nothing')
    .action((options: { dryRun?: boolean }, command: Command) => migrate(contextOf(command), options));

  sub(program, 'doctor', 'check the connection, the schema version and the clock skew; exit 1 on a problem')
    .option('--max-skew-ms <ms>', 'the clock skew past which doctor reports a problem', '1000')
    .action((options: { maxSkewMs?: string }, command: Command) => doctor(contextOf(command), options));

  sub(program, 'worker', 'run the works a module exports until SIGINT or SIGTERM')
    .argument('<module>', 'a module exporting a WorkRegistry (registry or default) or defineWork() results (works or default)')
    .option('--node-id <id>', 'this node id (default: hostname-pid)')
    .option('--concurrency <n>', 'the most tasks run at once on this node')
    .option('--stop-timeout <duration>', 'how long running work gets to finish at stop', '30s')
    .action((module: string, options: Parameters<typeof worker>[2], command: Command) => worker(contextOf(command), module, options));

  return program;
}
