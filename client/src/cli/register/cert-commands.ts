/**
 * `jigctl certs init|issue`: development certificates. The work is in ../../certs.ts, imported
 * when a command runs (it loads @peculiar/x509).
 */
import type { Argv } from 'yargs';
import type { AddCommand } from './command-kit.js';

const initBuilder = (y: Argv) =>
  y
    .option('dir', { type: 'string', demandOption: true })
    .option('hosts', {
      type: 'string',
      default: 'localhost,127.0.0.1',
      describe: 'server names/IPs',
    })
    .option('force', { type: 'boolean', describe: 'replace an existing CA' });

const issueBuilder = (y: Argv) =>
  y
    .option('dir', {
      type: 'string',
      demandOption: true,
      describe: 'the folder `certs init` made (the CA key is in its ca/)',
    })
    .option('name', { type: 'string', demandOption: true })
    .option('role', { choices: ['admin', 'operator', 'viewer'] as const, demandOption: true })
    .option('days', { type: 'number' });

/** `jigctl certs init|issue`. */
export const addCerts: AddCommand = (y) =>
  y.command('certs', 'create development certificates', (c) =>
    c
      .command(
        'init',
        'create a CA, a server certificate and one certificate per role',
        initBuilder,
        async (argv) => {
          const { initCerts } = await import('../../certs.js');
          const files = await initCerts({ dir: argv.dir, hosts: argv.hosts.split(','), force: argv.force });
          process.stdout.write(`${files.join('\n')}\n`);
          process.stderr.write(
            `jigctl: copy only ${argv.dir}/jig to the jig host (jiglet serve --tls-dir …/jig); ` +
              `keep ${argv.dir}/ca, the CA's private key, off it\n`,
          );
        },
      )
      .command('issue', 'issue a client certificate with a role', issueBuilder, async (argv) => {
        const { issueClientCert } = await import('../../certs.js');
        const out = await issueClientCert({
          dir: argv.dir,
          name: argv.name,
          role: argv.role,
          days: argv.days,
        });
        process.stdout.write(`${out.certPath}\n${out.keyPath}\n`);
      })
      .demandCommand(1, 'name a certs command: init or issue'),
  );
