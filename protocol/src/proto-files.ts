/** Where the .proto sources live at run time (the build copies them next to the compiled code). */

/** Folder holding the proto package tree, as a URL ending in '/'. */
export const PROTO_DIR = new URL('../proto/', import.meta.url);

/** The proto files of jiglet.v1, relative to PROTO_DIR. */
export const PROTO_FILES: readonly string[] = [
  'jiglet/v1/jobs.proto',
  'jiglet/v1/jig.proto',
  'jiglet/v1/images.proto',
  'jiglet/v1/leases.proto',
  'jiglet/v1/records.proto',
  'jiglet/v1/web.proto',
  'jiglet/v1/dut_access.proto',
];

/**
 * The compiled descriptors of jiglet.v1 and its imports, one per real file (`jiglet/v1/jig.proto`),
 * written by `npm run proto` (buf build) for server reflection.
 */
export const DESCRIPTOR_SET = new URL('../gen/descriptor-set.binpb', import.meta.url);
