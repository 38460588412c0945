import { parseArgs } from 'node:util';
import { z } from 'zod';
import { parseConfig } from '../config.ts';
import { insertCoordinator } from '../db/coordinators.ts';
import { openDatabase } from '../db/open.ts';
import { hashPassword } from '../security/passwords.ts';

const USAGE = `usage:
  switchboard coordinator create --email EMAIL --name NAME --password PASSWORD [--role coordinator|supervisor|admin]

Uses DATABASE_URL (or PGlite in DATA_DIR, default ./data; stop the server first, PGlite is single-process).`;

const CoordinatorInput = z.object({
  email: z.email(),
  name: z.string().trim().min(1),
  password: z.string().min(12, 'passwords need at least 12 characters'),
  role: z.enum(['coordinator', 'supervisor', 'admin']).default('coordinator'),
});

async function run(argv: string[]): Promise<number> {
  const [noun, verb, ...rest] = argv;
  if (noun !== 'coordinator' || verb !== 'create') {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const { values } = parseArgs({
    args: rest,
    options: { email: { type: 'string' }, name: { type: 'string' }, password: { type: 'string' }, role: { type: 'string' } },
    strict: true,
  });
  const input = CoordinatorInput.safeParse(values);
  if (!input.success) {
    process.stderr.write(input.error.issues.map((issue) => `--${issue.path.join('.')}: ${issue.message}`).join('\n') + `\n\n${USAGE}\n`);
    return 2;
  }
  const config = parseConfig(process.env);
  const db = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolSize: 2, applicationName: 'switchboard-cli' });
  try {
    const created = await insertCoordinator(db, { ...input.data, passwordHash: await hashPassword(input.data.password) });
    if (!created) {
      process.stderr.write(`a coordinator with email ${input.data.email} already exists\n`);
      return 1;
    }
    process.stdout.write(`created ${created.role} ${created.name} <${created.email}> id=${created.id}\n`);
    return 0;
  } finally {
    await db.close();
  }
}

process.exitCode = await run(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  return 1;
});
