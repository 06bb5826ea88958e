/** The QEMU DUT: its drivers for the registries and the `jig-driver qemu-host` command. */
export { qemuPowerDriver } from './power-qemu.js';
export { type QemuHostState, qemuHostRequest } from './qemu-control.js';
export { qemuHostCommand, runQemuHost } from './qemu-host-command.js';
export { qemuStorageMuxDriver } from './storage-mux-qemu.js';
