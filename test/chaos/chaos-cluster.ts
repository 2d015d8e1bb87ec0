/**
 * The PostgreSQL cluster the chaos suite stops and starts: a second cluster of this machine's PostgreSQL (Debian's
 * postgresql-common: `pg_createcluster`, `pg_ctlcluster`), on its own port, that `.ci/run` creates and starts. The
 * shared cluster (port 5432, `main`), which every other test uses, is never stopped: this module refuses to act on it.
 *
 * When the chaos cluster is absent (a developer machine that never ran `.ci/run`), the tests that need it skip with
 * {@link chaosClusterSkipReason}, which says how to create it. They do not create it themselves: that writes under
 * /etc/postgresql and /var/lib/postgresql and needs root, which a test should not take upon itself.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The cluster's name; override with HORAE_CHAOS_PG_CLUSTER. */
export const CHAOS_CLUSTER = process.env.HORAE_CHAOS_PG_CLUSTER ?? 'horae_chaos';
/** Its port; override with HORAE_CHAOS_PG_PORT. */
export const CHAOS_PORT = Number(process.env.HORAE_CHAOS_PG_PORT ?? 5499);
/** The connection string of the chaos cluster (trust auth on 127.0.0.1; its `postgres` database holds the schemas). */
export const CHAOS_PG_URL = `postgres://postgres@127.0.0.1:${CHAOS_PORT}/postgres`;

const CONFIG_ROOT = '/etc/postgresql';

/** The PostgreSQL major version that has the chaos cluster, if any. */
function clusterVersion(): string | undefined {
  if (!existsSync(CONFIG_ROOT)) return undefined;
  return readdirSync(CONFIG_ROOT).find((version) => existsSync(join(CONFIG_ROOT, version, CHAOS_CLUSTER, 'postgresql.conf')));
}

/** The command that creates and starts the cluster by hand (what .ci/run does). */
export const CREATE_COMMAND =
  `pg_createcluster <version> ${CHAOS_CLUSTER} -p ${CHAOS_PORT} --start-conf=manual -- --auth=trust && ` +
  `pg_ctlcluster --skip-systemctl-redirect <version> ${CHAOS_CLUSTER} start (as root; <version> from ls ${CONFIG_ROOT}), or run .ci/run`;

function refuseShared(): void {
  if (CHAOS_PORT === 5432 || CHAOS_CLUSTER === 'main') throw new Error('the chaos suite never stops the shared cluster (main, port 5432)');
}

function ready(): boolean {
  return spawnSync('pg_isready', ['-q', '-h', '127.0.0.1', '-p', String(CHAOS_PORT)]).status === 0;
}

function ctlArgs(action: readonly string[]): string[] {
  refuseShared();
  const version = clusterVersion();
  if (version === undefined) throw new Error(`no PostgreSQL cluster ${CHAOS_CLUSTER}: ${CREATE_COMMAND}`);
  return ['--skip-systemctl-redirect', version, CHAOS_CLUSTER, ...action];
}

/**
 * Why the chaos cluster cannot be used here, or undefined when it can. A cluster that exists but is stopped (a run
 * that died mid-outage) is started: it is this suite's own.
 */
export function chaosClusterSkipReason(): string | undefined {
  if (CHAOS_PORT === 5432 || CHAOS_CLUSTER === 'main') return 'HORAE_CHAOS_PG_PORT / HORAE_CHAOS_PG_CLUSTER name the shared cluster, which the chaos suite never stops';
  if (spawnSync('pg_ctlcluster', ['--help']).error !== undefined) return 'pg_ctlcluster is not installed (Debian postgresql-common): the PostgreSQL outage tests need it';
  if (clusterVersion() === undefined) return `no PostgreSQL cluster "${CHAOS_CLUSTER}" on port ${CHAOS_PORT}; create it with: ${CREATE_COMMAND}`;
  if (!ready()) {
    try {
      execFileSync('pg_ctlcluster', ctlArgs(['start']), { stdio: 'pipe' });
    } catch (error) {
      return `the PostgreSQL cluster "${CHAOS_CLUSTER}" is stopped and did not start: ${(error as Error).message}`;
    }
  }
  return undefined;
}

/**
 * Stops the chaos cluster: `fast` (clients disconnected, a clean shutdown checkpoint) or `immediate` (every server
 * process quits at once, crash recovery at the next start).
 */
export async function stopChaosCluster(mode: 'fast' | 'immediate'): Promise<void> {
  await execFileAsync('pg_ctlcluster', ctlArgs(['stop', '-m', mode]));
}

/** Starts the chaos cluster; `pg_ctlcluster start` returns once the server accepts connections. */
export async function startChaosCluster(): Promise<void> {
  await execFileAsync('pg_ctlcluster', ctlArgs(['start']));
  if (!ready()) throw new Error(`the PostgreSQL cluster ${CHAOS_CLUSTER} does not accept connections after its start`);
}

/** Whether the chaos cluster accepts connections (after a test: a failed one must not leave it stopped). */
export function chaosClusterReady(): boolean {
  return ready();
}
