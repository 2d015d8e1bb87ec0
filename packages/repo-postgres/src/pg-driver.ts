/**
 * Loads `pg`, the driver the adapter opens its own pool and clients with: a peer dependency, loaded with
 * `requirePeerDependency` so that a missing one is a HoraeError naming the install (see its TSDoc for why it is
 * required, not imported).
 */
import type PgModule from 'pg';
import { requirePeerDependency } from '@horae/storage';

/**
 * The `pg` module (what `import pg from 'pg'` gives: `pg.Pool`, `pg.Client`, ...), loaded when this package is
 * imported.
 *
 * @throws HoraeError with code `MISSING_DEPENDENCY`, at import, when `pg` is not installed
 */
export const pg: typeof PgModule = requirePeerDependency<typeof PgModule>('pg', '@horae/repo-postgres', import.meta.url);
