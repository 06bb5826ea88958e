/**
 * Authorization as data: what each role may do, and which permission each RPC needs. An RPC
 * that is missing from METHOD_PERMISSIONS is denied — new RPCs are closed until listed here.
 */
import { permissionDenied } from '../../../protocol/src/errors.js';
import type { Identity, Role } from './identity.js';

/** Things a caller may be allowed to do. `*.own` acts on one's own jobs; `*.any` on anyone's. */
export type Permission =
  | 'jobs.read'
  | 'jobs.start'
  | 'jobs.stop.own'
  | 'jobs.stop.any'
  | 'jobs.stdin.own'
  | 'jobs.stdin.any'
  | 'jig.read'
  | 'power.switch'
  | 'console.write'
  | 'console.takeover'
  | 'console.web'
  | 'images.read'
  | 'images.upload'
  | 'images.remove'
  | 'flash'
  | 'leases.read'
  | 'records.read'
  | 'leases.claim'
  | 'leases.revoke'
  | 'leases.ids.any'
  | 'duts.admin'
  | 'agent.health'
  | 'agent.reflect';

const VIEWER: readonly Permission[] = [
  'jobs.read',
  'jig.read',
  'images.read',
  'leases.read',
  'records.read',
  // A browser console ticket; the session types only while its identity holds the DUT's lease
  // and its role has console.write (checked by the web console at each keystroke).
  'console.web',
  'agent.health',
  'agent.reflect',
];
const OPERATOR: readonly Permission[] = [
  ...VIEWER,
  'jobs.start',
  'jobs.stop.own',
  'jobs.stdin.own',
  'power.switch',
  'console.write',
  'images.upload',
  'flash',
  'leases.claim',
];
const ADMIN: readonly Permission[] = [
  ...OPERATOR,
  'jobs.stop.any',
  'jobs.stdin.any',
  'console.takeover',
  'images.remove',
  'leases.revoke',
  // Every lease's id, so an admin can revoke it; everyone else sees only the ids it holds.
  'leases.ids.any',
  'duts.admin',
];

/** Role → permissions. */
export const ROLE_PERMISSIONS: Readonly<Record<Role, ReadonlySet<Permission>>> = {
  viewer: new Set(VIEWER),
  operator: new Set(OPERATOR),
  admin: new Set(ADMIN),
};

/** Full gRPC method path → the permission it needs. */
export const METHOD_PERMISSIONS: Readonly<Record<string, Permission>> = {
  '/jiglet.v1.JobService/StartJob': 'jobs.start',
  '/jiglet.v1.JobService/StopJob': 'jobs.stop.own',
  '/jiglet.v1.JobService/GetJob': 'jobs.read',
  '/jiglet.v1.JobService/ListJobs': 'jobs.read',
  '/jiglet.v1.JobService/StreamOutput': 'jobs.read',
  '/jiglet.v1.JobService/WriteStdin': 'jobs.stdin.own',
  '/jiglet.v1.JigService/ListDuts': 'jig.read',
  // Reading the power state is a viewer's right; switching it is checked in the handler.
  '/jiglet.v1.JigService/Power': 'jig.read',
  '/jiglet.v1.JigService/SerialTail': 'jig.read',
  '/jiglet.v1.JigService/Console': 'console.write',
  '/jiglet.v1.JigService/Expect': 'jig.read',
  '/jiglet.v1.JigService/Flash': 'flash',
  // Exec types on the console as its one writer; the lease is checked in the handler.
  '/jiglet.v1.JigService/Exec': 'console.write',
  // A shell or a file copy on the DUT can do what a command on its console can.
  '/jiglet.v1.DutAccessService/Ssh': 'console.write',
  '/jiglet.v1.DutAccessService/CopyToDut': 'console.write',
  '/jiglet.v1.DutAccessService/CopyFromDut': 'console.write',
  '/jiglet.v1.DutAccessService/ForgetHostKey': 'duts.admin',
  // Goto switches power (and may flash, checked in the handler) and types on the console.
  '/jiglet.v1.JigService/GotoState': 'power.switch',
  // Health decides who may lease a DUT at all, and a check takes the DUT from the queue.
  '/jiglet.v1.JigService/SetDutState': 'duts.admin',
  '/jiglet.v1.JigService/CheckDutHealth': 'duts.admin',
  '/jiglet.v1.LeaseService/Claim': 'leases.claim',
  '/jiglet.v1.LeaseService/Renew': 'leases.claim',
  '/jiglet.v1.LeaseService/Release': 'leases.claim',
  '/jiglet.v1.LeaseService/ListLeases': 'leases.read',
  '/jiglet.v1.LeaseService/WatchLeases': 'leases.read',
  // A run's timeline holds what a viewer may already read: jobs, power, leases and serial.
  '/jiglet.v1.RecordService/GetTimeline': 'records.read',
  '/jiglet.v1.WebService/IssueTicket': 'console.web',
  '/jiglet.v1.ImageService/StatImage': 'images.read',
  '/jiglet.v1.ImageService/ListImages': 'images.read',
  '/jiglet.v1.ImageService/UploadImage': 'images.upload',
  '/jiglet.v1.ImageService/RemoveImage': 'images.remove',
  '/grpc.health.v1.Health/Check': 'agent.health',
  '/grpc.health.v1.Health/Watch': 'agent.health',
  '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo': 'agent.reflect',
  '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo': 'agent.reflect',
};

/**
 * What each permission lets a caller do, in the words of a refusal ("viewer may not start jobs").
 * A permission missing here is named by its RPC instead.
 */
const PERMISSION_WORDS: Partial<Record<Permission, string>> = {
  'jobs.read': 'read jobs',
  'jobs.start': 'start jobs',
  'jobs.stop.own': 'stop jobs',
  'jobs.stdin.own': "write to jobs' stdin",
  'jig.read': 'read the jig',
  'power.switch': 'switch power',
  'console.write': "attach to a DUT's console",
  'console.web': 'open the browser console',
  'images.read': 'list images',
  'images.upload': 'upload images',
  'images.remove': 'remove cached images',
  flash: 'flash a DUT',
  'leases.read': 'list leases',
  'records.read': 'read run records',
  'leases.claim': 'claim or release leases',
  'duts.admin': "set a DUT's health, run its health check or forget its SSH host key",
  'agent.health': 'check the agent health',
  'agent.reflect': 'use server reflection',
};

/** The roles that hold a permission, for "that needs the operator or admin role". */
function rolesWith(permission: Permission): string {
  return (Object.keys(ROLE_PERMISSIONS) as Role[]).filter((r) => can(r, permission)).join(' or ');
}

/** True when the role holds the permission. */
export function can(role: Role, permission: Permission): boolean {
  return ROLE_PERMISSIONS[role].has(permission);
}

/** Throws PERMISSION_DENIED unless the identity may call the method. */
export function authorizeMethod(identity: Identity, methodPath: string): void {
  const needed = METHOD_PERMISSIONS[methodPath];
  if (needed === undefined) throw permissionDenied(`${methodPath} is not an RPC this agent allows`);
  if (!can(identity.role, needed)) {
    const what = PERMISSION_WORDS[needed] ?? `call ${methodPath.split('/').pop()}`;
    throw permissionDenied(
      `${identity.name} (role ${identity.role}) may not ${what}; that needs a certificate with the ${rolesWith(needed)} role`,
    );
  }
}

/**
 * Throws PERMISSION_DENIED unless the identity owns the job or holds the `.any` permission,
 * e.g. an operator may stop only its own jobs while an admin may stop anyone's.
 */
export function authorizeOwner(
  identity: Identity,
  owner: string,
  anyPermission: Permission,
  what: string,
): void {
  if (identity.name === owner || can(identity.role, anyPermission)) return;
  throw permissionDenied(`${identity.name} may not ${what}: it belongs to ${owner}`);
}

/**
 * Whether `who` may see the id of a lease held by `holder`. The id is what a holder's calls carry,
 * so only the holder and admins see it (issue 11); everyone else sees holder, DUT and expiry.
 */
export function seesLeaseId(who: Identity, holder: string): boolean {
  return who.name === holder || can(who.role, 'leases.ids.any');
}
