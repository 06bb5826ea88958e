/**
 * What server reflection describes, file by file under the names the sources have
 * (`jiglet/v1/jig.proto`, `google/protobuf/timestamp.proto`, `grpc/health/v1/health.proto`).
 * proto-loader merges a package's files into one invented file (`jiglet_v1.proto`), so tools that
 * fetch a file by its name (grpcurl's `describe`, Postman, buf curl) found nothing.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import {
  type EnumTypeDefinition,
  loadSync,
  type PackageDefinition,
  type ProtobufTypeDefinition,
} from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { DESCRIPTOR_SET } from '../../../protocol/src/proto-files.js';

/** A package definition for `new ReflectionService(…)`: our files from buf, health's renamed. */
export function reflectionDefinition(): PackageDefinition {
  const ours = fromBinary(FileDescriptorSetSchema, readFileSync(DESCRIPTOR_SET)).file;
  // grpc-health-check ships its proto alone; proto-loader names it after the package.
  const health = Object.values(loadSync(healthProtoPath))
    .flatMap((d): Buffer[] => ('format' in d ? (d as ProtobufTypeDefinition).fileDescriptorProtos : []))
    .map((bin) => fromBinary(FileDescriptorProtoSchema, bin))
    .filter((f) => f.package === 'grpc.health.v1')
    .map((f) => ({ ...f, name: `${f.package.replace(/\./g, '/')}/${basename(healthProtoPath)}` }));
  // Each message of a package carries the same file descriptors: keep one per name.
  const byName = new Map([...ours, ...health].map((f) => [f.name, f]));
  const files = [...byName.values()].map((f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f)));
  // The reflection service reads only `fileDescriptorProtos` of each entry (and dedupes by name).
  const entry: EnumTypeDefinition = {
    format: 'Protocol Buffer 3 EnumDescriptorProto',
    type: {},
    fileDescriptorProtos: files,
  };
  return { files: entry };
}
