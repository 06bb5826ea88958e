import { healthJson, healthLine } from './dut-health-format.js';
import { EXIT } from './exit-codes.js';
import { connect } from './job-commands.js';
import type { DutCheckFlags, DutStateFlags, ForgetHostKeyFlags } from './register/dut-commands.js';

/** `jigctl dut state D good|bad|maintenance [--reason TEXT]`: prints the DUT's health as it is now. */
export async function dutStateCommand(flags: DutStateFlags): Promise<number> {
  const client = connect(flags);
  try {
    const dut = await client.jig.setState(flags.dut, flags.state, flags.reason ?? '');
    process.stdout.write(
      flags.output === 'json'
        ? `${JSON.stringify({ name: dut.name, health: healthJson(dut) }, null, 2)}\n`
        : `${healthLine(dut)}\n`,
    );
    return 0;
  } finally {
    client.close();
  }
}

/** `jigctl dut check D`: runs the check, waits for it, exits 0 when it passed and 1 when not. */
export async function dutCheckCommand(flags: DutCheckFlags): Promise<number> {
  const client = connect(flags);
  try {
    const r = await client.jig.checkHealth(flags.dut);
    if (flags.output === 'json') {
      const report = { name: r.dut.name, passed: r.passed, jobId: r.jobId, health: healthJson(r.dut) };
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    } else {
      process.stdout.write(
        `${r.dut.name}: health check ${r.passed ? 'passed' : 'failed'}${r.jobId ? ` (job ${r.jobId})` : ''}\n${healthLine(r.dut)}\n`,
      );
    }
    return r.passed ? 0 : EXIT.failure;
  } finally {
    client.close();
  }
}

/** `jigctl dut forget-host-key D` (admin): the agent forgets the DUT's learnt SSH host key. */
export async function forgetHostKeyCommand(flags: ForgetHostKeyFlags): Promise<number> {
  const client = connect(flags);
  try {
    const fingerprint = await client.dut.forgetHostKey(flags.dut);
    process.stdout.write(
      fingerprint
        ? `${flags.dut}: forgot SSH host key ${fingerprint}; the next connection learns the key the DUT shows then\n`
        : `${flags.dut}: no SSH host key was learnt; the next connection learns one\n`,
    );
    return 0;
  } finally {
    client.close();
  }
}
