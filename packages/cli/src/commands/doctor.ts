/**
 * `horae doctor`: can this machine reach the database, is its schema the one this horae speaks, is the clock
 * close to the database's. Exit 1 when a check finds a problem.
 */
import type { CommandContext } from '../context.js';
import { probeDatabase } from '../connect.js';
import { CliError, EXIT_FAILED, usageError } from '../exit-codes.js';

/** One check and what it found. */
interface Check {
  name: string;
  status: 'ok' | 'warning' | 'problem' | 'info';
  detail: string;
}

/** The skew past which doctor reports a problem, unless told otherwise. */
export const DEFAULT_MAX_SKEW_MS = 1000;

/** `horae doctor [--max-skew-ms N]`. */
export async function doctor(ctx: CommandContext, options: { maxSkewMs?: string }): Promise<void> {
  const maxSkew = options.maxSkewMs === undefined ? DEFAULT_MAX_SKEW_MS : Number(options.maxSkewMs);
  if (!Number.isSafeInteger(maxSkew) || maxSkew < 0) throw usageError(`--max-skew-ms must be an integer ≥ 0; got ${JSON.stringify(options.maxSkewMs)}`);
  const target = ctx.target();
  const probe = await probeDatabase(target);
  const checks: Check[] = [{ name: 'connection', status: 'ok', detail: `${target.adapter} at ${target.display}` }];
  const { storedVersion: stored, supportedVersion: supported } = probe;
  if (stored === 0) checks.push({ name: 'schema', status: 'problem', detail: `no Horae schema here (this horae speaks version ${supported}): wrong database or schema, or run \`horae migrate\`` });
  else if (stored > supported) checks.push({ name: 'schema', status: 'problem', detail: `version ${stored} is newer than the ${supported} this horae understands: upgrade horae` });
  else if (stored < supported) checks.push({ name: 'schema', status: 'warning', detail: `version ${stored} of ${supported}: the next node to open it, or \`horae migrate\`, migrates it` });
  else checks.push({ name: 'schema', status: 'ok', detail: `version ${stored} of ${supported}` });
  if (probe.clockSkewMs === null) checks.push({ name: 'clock', status: 'info', detail: probe.clockNote ?? 'not measured' });
  else {
    const skew = probe.clockSkewMs;
    const detail = `the database's clock is ${Math.abs(skew)} ms ${skew >= 0 ? 'ahead of' : 'behind'} this machine's (round trip ${probe.roundTripMs} ms)`;
    checks.push({ name: 'clock', status: Math.abs(skew) > maxSkew ? 'problem' : 'ok', detail: Math.abs(skew) > maxSkew ? `${detail}, over ${maxSkew} ms: timers fire by this clock, due and leases by the database's` : detail });
  }
  if (stored !== 0 && stored === supported) {
    const counts = await ctx.withRepository((repository) => repository.countByState());
    checks.push({ name: 'tasks', status: 'ok', detail: Object.entries(counts).map(([s, n]) => `${s} ${n}`).join(', ') });
  }
  const problems = checks.filter((c) => c.status === 'problem');
  const { out } = ctx;
  if (out.json) {
    out.document({ ok: problems.length === 0, adapter: target.adapter, database: target.display, schema: { stored, supported }, clockSkewMs: probe.clockSkewMs, roundTripMs: probe.roundTripMs, checks });
  } else {
    const mark = { ok: out.green('ok'), warning: out.yellow('warning'), problem: out.red('problem'), info: out.dim('info') };
    out.table(['CHECK', 'STATUS', 'DETAIL'], checks.map((c) => [c.name, mark[c.status], c.detail]));
  }
  if (problems.length > 0) {
    throw new CliError(`doctor found ${problems.length} problem${problems.length === 1 ? '' : 's'}: ${problems.map((p) => p.name).join(', ')}`, EXIT_FAILED, 'DOCTOR_PROBLEM');
  }
}
