#!/usr/bin/env node
/**
 * `jigctl`: the command line for CI pipelines and engineers. Failures print one line on stderr
 * and exit 2 (usage), 69 (agent unreachable), 77 (permission/identity) or 1; `run` exits with
 * the job's own code, and `queue submit --wait` / `queue logs -f` with the queued job's (75
 * infra-error, 124 timeout, 130 cancelled).
 *
 * Each command's flags and registration live in cli/register/ (one module per group, the flags
 * type its handler takes derived from the same definition); each handler is imported only when
 * its command runs, so a start loads yargs and the registrations, nothing more.
 */
import net from 'node:net';
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { describeFailure, EXIT } from './cli/exit-codes.js';
import { addCerts } from './cli/register/cert-commands.js';
import type { AddCommand, Outcome } from './cli/register/command-kit.js';
import { addDut } from './cli/register/dut-commands.js';
import { addConsole, addCopy, addExec, addSsh } from './cli/register/dut-shell-commands.js';
import { addFlash, addImages } from './cli/register/image-commands.js';
import { addExpect, addJig, addPower, addSerial } from './cli/register/jig-commands.js';
import { addList, addLogs, addRun, addStart, addStatus, addStop } from './cli/register/job-commands.js';
import { addClaim, addLeases, addRelease } from './cli/register/lease-commands.js';
import { addQueue } from './cli/register/queue-commands.js';
import { addReport } from './cli/register/report-command.js';
import { resolveConnection } from './connection.js';

/** Every top-level command, in the order `jigctl --help` lists them. */
const COMMANDS: readonly AddCommand[] = [
  addRun,
  addStart,
  addStop,
  addStatus,
  addLogs,
  addList,
  addJig,
  addPower,
  addDut,
  addSerial,
  addClaim,
  addReport,
  addRelease,
  addQueue,
  addLeases,
  addImages,
  addFlash,
  addConsole,
  addExec,
  addSsh,
  addCopy,
  addExpect,
  addCerts,
];

/** Re-tries the TLS handshake by hand to explain an UNAVAILABLE (see diagnose-connection.ts). */
async function diagnose() {
  const argv = (await yargs(hideBin(process.argv)).help(false).version(false).parse()) as Record<
    string,
    string | undefined
  >;
  const { diagnoseConnection } = await import('./diagnose-connection.js');
  return diagnoseConnection(resolveConnection(argv));
}

// A dependency's deprecation warning is noise a CLI user cannot act on. (The one seen, DEP0123
// for grpc-js sending an IP address as the TLS server name, the client library now avoids.)
process.noDeprecation = true;

// grpc-js asks net.isIPv6 about every address it connects to, and Node answers with a large
// regular expression that V8 compiles on first use and again on second (~5 ms of a cold start,
// README: Cold start). An IPv6 address always holds a ':'; anything else is answered at once.
const isIPv6 = net.isIPv6;
net.isIPv6 = (input: string): boolean => input.includes(':') && isIPv6(input);

/** Runs the command line; the exit code goes to process.exitCode (no top-level await: the bundle is CommonJS, see protocol/bundle-binaries.mjs). */
async function main(): Promise<void> {
  const outcome: Outcome = { exitCode: 0 };
  try {
    let cli: Argv = yargs(hideBin(process.argv))
      .scriptName('jigctl')
      .parserConfiguration({ 'populate--': true })
      .strict();
    for (const add of COMMANDS) cli = add(cli, outcome);
    await cli
      .demandCommand(1, 'name a command (jigctl --help lists them)')
      .fail((msg, err) => {
        if (err) throw err;
        process.stderr.write(`jigctl: ${msg}\n`);
        process.exit(EXIT.usage);
      })
      .help()
      .parseAsync();
  } catch (err) {
    const { code, message } = await describeFailure(err, diagnose);
    process.stderr.write(`jigctl: ${message}\n`);
    outcome.exitCode = code;
  }
  process.exitCode = outcome.exitCode;
}

void main();
