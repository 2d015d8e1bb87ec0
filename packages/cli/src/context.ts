/**
 * What every command receives: the streams, the output, and the database `--db` names, opened on demand and closed
 * when the command ends.
 */
import type { Repository } from '@horae/storage';
import { parseDatabaseUrl, maskSecrets, type DatabaseTarget } from './database-url.js';
import { openRepository, secretsOf } from './connect.js';
import type { CliIo } from './io.js';
import { Output } from './output.js';

/** The options every command takes. */
export interface GlobalOptions {
  /** `--db`. */
  db?: string;
  /** `--json`. */
  json?: boolean;
}

/** The context of one command run. */
export class CommandContext {
  readonly io: CliIo;
  readonly out: Output;
  readonly #db: string | undefined;
  #target: DatabaseTarget | undefined;

  constructor(io: CliIo, options: GlobalOptions) {
    this.io = io;
    this.out = new Output(io, options.json === true);
    this.#db = options.db ?? (io.env ?? process.env).HORAE_DB;
  }

  /** Where relative paths are resolved. */
  get cwd(): string {
    return this.io.cwd ?? process.cwd();
  }

  /** The parsed `--db` (or `HORAE_DB`). @throws CliError exit 3 when missing or of an unknown scheme */
  target(): DatabaseTarget {
    this.#target ??= parseDatabaseUrl(this.#db, this.cwd);
    return this.#target;
  }

  /** Masks the password of the database URL (and any URL) in a message. */
  mask(text: string): string {
    let secrets: readonly string[] = [];
    try {
      secrets = secretsOf(this.target());
    } catch {
      // no usable --db: only URL-shaped passwords are masked
    }
    return maskSecrets(text, secrets);
  }

  /**
   * Opens the repository, runs `use` on it, and closes it whatever happens.
   *
   * @param options - `create`: a missing SQLite file is created
   */
  async withRepository<T>(use: (repository: Repository) => Promise<T>, options: { create?: boolean } = {}): Promise<T> {
    const repository = await openRepository(this.target(), options);
    try {
      return await use(repository);
    } finally {
      await repository.close();
    }
  }
}
