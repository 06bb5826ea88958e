/**
 * The public surface of jig-drivers: the jig description, the power capability and its drivers,
 * and USB device matching. The agent and the `jig-driver` executable import from here only.
 */
export type { CheckResult, KeyPath } from './config-issues.js';
export { checkAgainst, formatKeyPath, parseOrThrow } from './config-issues.js';
export { abortable, deadlineExceeded, withDeadline } from './deadline.js';
export type { HttpAnswer, HttpGetOptions } from './http-get.js';
export { httpGet, httpGetJson, redactUrl } from './http-get.js';
export type {
  DutDescription,
  JigDescription,
  SafeState,
  SerialConfig,
  StorageConfig,
  StorageDeviceConfig,
} from './jig-description.js';
export {
  DEFAULT_APPEAR_TIMEOUT_MS,
  findDut,
  loadJigDescription,
  parseJigDescription,
} from './jig-description.js';
export type {
  PowerDriverContext,
  PowerDriverFactory,
  PowerOps,
  PowerState,
  PowerSwitch,
} from './power.js';
export {
  commonPowerOptions,
  DEFAULT_OFF_TIME_MS,
  DEFAULT_POWER_TIMEOUT_MS,
  makePowerSwitch,
  recordPowerSteps,
} from './power.js';
export { commandPowerDriver, stateFromOutput } from './power-command.js';
export type { GpioPowerConfig } from './power-gpio.js';
export { createGpioPowerDriver, gpiogetArgv, gpioPowerDriver, gpiosetArgv } from './power-gpio.js';
export type { PowerConfig } from './power-registry.js';
export { builtinPowerRegistry, PowerRegistry } from './power-registry.js';
export { shellyPowerDriver } from './power-shelly.js';
export type { TasmotaTarget } from './power-tasmota.js';
export { TasmotaClient, tasmotaPowerDriver, tasmotaSwitch } from './power-tasmota.js';
export { createUsbHidRelayPowerDriver, usbHidRelayPowerDriver } from './power-usb-hid-relay.js';
export { virtualPowerDriver } from './power-virtual.js';
export type { CommandOptions, CommandResult, CommandRunner } from './run-command.js';
export { runCommand, runShellCommand } from './run-command.js';
export type { SerialCaptureOptions } from './serial-capture.js';
export { DEFAULT_REOPEN_TIMEOUT_MS, PATH_RECHECK_MS, runSerialCapture } from './serial-capture.js';
export type { PositionedRecord, SerialEventName, SerialRecord } from './serial-framing.js';
export { encodeChunk, encodeEvent, MAX_HEADER_BYTES, SerialRecordDecoder } from './serial-framing.js';
export type { UsbSerialCaptureOptions } from './serial-usb-capture.js';
export { capturePath, runUsbSerialCapture, USB_WAIT_SLICE_MS } from './serial-usb-capture.js';
export type { MuxSide, StorageMux, StorageMuxContext, StorageMuxFactory } from './storage-mux.js';
export { commandStorageMuxDriver, sideFromOutput } from './storage-mux-command.js';
export type { StorageMuxStepContext } from './storage-mux-common.js';
export { commonMuxOptions, DEFAULT_MUX_TIMEOUT_MS, recordMuxSteps } from './storage-mux-common.js';
export type { StorageMuxConfig } from './storage-mux-registry.js';
export { builtinStorageMuxRegistry, StorageMuxRegistry } from './storage-mux-registry.js';
export { sdMuxCtrlArgv, sdwireStorageMuxDriver, sideFromSdMuxStatus } from './storage-mux-sdwire.js';
export { sideFromUsbsdmuxGet, usbsdmuxArgv, usbsdmuxStorageMuxDriver } from './storage-mux-usbsdmux.js';
export { virtualStorageMuxDriver } from './storage-mux-virtual.js';
export type { ControlSetup, RelayBoardState } from './usb-hid-relay-protocol.js';
export {
  allRelaysCommand,
  GET_FEATURE_REPORT,
  HID_RELAY_PID,
  HID_RELAY_VID,
  isRelayOn,
  parseRelayReport,
  relayCommand,
  relayCountFromProduct,
  SET_FEATURE_REPORT,
} from './usb-hid-relay-protocol.js';
export type { HidRelayHandle, HidRelayTransport } from './usb-hid-relay-transport.js';
export { libusbHidRelayTransport } from './usb-hid-relay-transport.js';
export type { DeviceKind, DeviceRoots, ResolvedDevice, ResolveOptions, UsbMatch } from './usb-match.js';
export { describeMatch, resolveUsbDevice } from './usb-match.js';
export type { WaitForDeviceOptions } from './wait-for-device.js';
export { DEFAULT_RECHECK_MS, waitForDevice } from './wait-for-device.js';
