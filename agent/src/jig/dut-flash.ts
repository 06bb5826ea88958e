/**
 * Flashing one DUT's medium: power the DUT off first (a medium switched away under a running DUT
 * corrupts both), mark the medium dirty, run the flash job (flash-job.ts), and record the image
 * on the medium once the job succeeds. At most one flash per DUT at a time.
 */
import type { Logger } from 'pino';
import type { DutDescription } from '../../../jig-drivers/src/jig-description.js';
import { failedPrecondition } from '../../../protocol/src/errors.js';
import type { AgentEvents } from '../events/agent-events.js';
import type { ArrivingUpload } from '../images/arriving-uploads.js';
import type { ImageCache } from '../images/image-cache.js';
import type { Supervisor } from '../jobs/supervisor.js';
import type { DutStateFile, DutStorageState } from './dut-state.js';
import { flashJobSpec } from './flash-job.js';
import type { JigDriverCommand } from './jig-driver-command.js';

/** What a flash asks for. */
export interface FlashRequest {
  imageSha256: string;
  /** The image is still being uploaded: write it as it arrives (image-cache.ts follow). */
  arriving?: ArrivingUpload;
  bmapSha256?: string;
  verify: boolean;
  owner: string;
  /** The caller's lease check, run again before the power-off (see DutPowerQueue.run). */
  fence?: () => void;
}

/** What the flasher works with. */
export interface DutFlasherOptions {
  dut: DutDescription;
  supervisor: Supervisor;
  jigDriver: JigDriverCommand;
  images: ImageCache;
  stateFile: DutStateFile;
  /** The medium's state, loaded from stateFile and saved back on every change. */
  storage: DutStorageState;
  log: Logger;
  events: AgentEvents;
  stateDir: string;
  /** Powers the DUT off (through its power queue) under the caller's fence. */
  powerOff: (owner: string, fence?: () => void) => Promise<unknown>;
}

/** The flashes of one DUT. */
export class DutFlasher {
  /** The flash job running now ('starting' while it is being set up), if any. */
  flashing: string | undefined;
  readonly #o: DutFlasherOptions;

  constructor(o: DutFlasherOptions) {
    this.#o = o;
  }

  /**
   * Starts flashing a cached image, or one still arriving; resolves with the job once it runs. A
   * cached image stays pinned until the job ends; an arriving one's failed upload stops the job.
   */
  async start(opts: FlashRequest): Promise<string> {
    const { dut, images, supervisor, jigDriver, stateFile, storage: medium, log, events } = this.#o;
    const { storage } = dut;
    const { arriving } = opts;
    const releases: (() => void)[] = arriving ? [arriving.release] : [];
    try {
      if (!storage) throw failedPrecondition(`DUT ${dut.name} has no storage mux in the jig description`);
      if (this.flashing) throw failedPrecondition(`a flash of ${dut.name} is running (job ${this.flashing})`);
      if (!arriving) releases.push(images.pin(opts.imageSha256));
      if (opts.bmapSha256) releases.push(images.pin(opts.bmapSha256));
      this.flashing = 'starting';
      if (dut.power) await this.#o.powerOff(opts.owner, opts.fence);
      medium.dirty = true;
      stateFile.save(medium);
      const job = await supervisor.start(
        flashJobSpec({
          jigDriver,
          dut: dut.name,
          storage,
          imagePath: arriving ? arriving.path : images.pathOf(opts.imageSha256),
          arriving: arriving && { size: arriving.size, sha256: arriving.sha256 },
          bmapPath: opts.bmapSha256 ? images.pathOf(opts.bmapSha256) : undefined,
          verify: opts.verify,
          stateDir: this.#o.stateDir,
        }),
        opts.owner,
        // The flasher writes a block device and switches the mux: an agent job.
        { privileged: true, title: `flash ${arriving?.name || imageName(images, opts.imageSha256)}` },
      );
      const id = job.record.id;
      this.flashing = id;
      // The flasher would wait out its stall timeout for bytes that will never come.
      arriving?.outcome.catch((err: unknown) => {
        log.warn({ job: id, err }, 'the upload a flash was reading failed; stopping the flash');
        supervisor.stop(id, 2000, 'error').catch(() => undefined);
      });
      const flashEvent = (phase: 'started' | 'done' | 'failed'): void =>
        events.publish({
          kind: 'flash',
          at: Date.now(),
          dut: dut.name,
          job: id,
          phase,
          image: opts.imageSha256,
        });
      flashEvent('started');
      medium.lastJobId = id;
      stateFile.save(medium);
      // Nobody awaits this: whatever fails in it is logged here, never an unhandled rejection.
      supervisor
        .ended(id)
        .then((ended) => {
          for (const release of releases) release();
          this.flashing = undefined;
          if (ended.record.state === 'exited' && ended.record.exitCode === 0) {
            Object.assign(medium, {
              dirty: false,
              lastImageSha256: opts.imageSha256,
              lastFlashedAt: Date.now(),
            });
            this.#saveStorage('the flash completed');
            log.info({ job: id, image: opts.imageSha256 }, 'flash complete');
            flashEvent('done');
          } else {
            flashEvent('failed');
            log.warn(
              { job: id, state: ended.record.state, exitCode: ended.record.exitCode },
              'flash failed; the medium is dirty',
            );
          }
        })
        .catch((err: unknown) => log.error({ err, job: id }, 'could not finish the flash record'));
      return id;
    } catch (err) {
      for (const release of releases) release();
      this.flashing = undefined;
      throw err;
    }
  }

  /**
   * Saves the storage state after a flash ended. The flash itself is over, so a save that fails
   * (a full disk) is logged and the state in memory stays right; a restart would then see the
   * medium as dirty, which is the safe side.
   */
  #saveStorage(why: string): void {
    try {
      this.#o.stateFile.save(this.#o.storage);
    } catch (err) {
      this.#o.log.error({ err }, `could not save the storage state of ${this.#o.dut.name} after ${why}`);
    }
  }
}

/** An image as people know it: the file name it was uploaded under, else the start of its hash. */
function imageName(images: ImageCache, sha256: string): string {
  try {
    return images.get(sha256).name || `image ${sha256.slice(0, 12)}`;
  } catch {
    // Pinned a moment ago, so it is there; a name is not worth failing a flash for.
    return `image ${sha256.slice(0, 12)}`;
  }
}
