/**
 * What grpcurl and load balancers use: server reflection lists and describes the services, and
 * the standard health service answers — both behind the same mutual TLS as everything else.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import {
  credentials,
  type GrpcObject,
  loadPackageDefinition,
  type ServiceClientConstructor,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { DESCRIPTOR_SET } from '../../protocol/src/proto-files.js';

const require = createRequire(import.meta.url);
const reflectionProto = join(
  dirname(require.resolve('@grpc/reflection/package.json')),
  'build/proto/grpc/reflection/v1/reflection.proto',
);

function serviceClient(file: string, path: string[]): ServiceClientConstructor {
  let node: unknown = loadPackageDefinition(loadSync(file, { keepCase: true, longs: String, enums: String }));
  for (const p of path) node = (node as GrpcObject)[p];
  return node as ServiceClientConstructor;
}

describe('health and reflection', () => {
  let t: TestAgent;
  before(async () => {
    t = await startTestAgent();
  });
  after(async () => {
    await t.stop();
  });

  function creds(who: string) {
    const s = t.pki.as(who, t.address);
    return credentials.createSsl(readFileSync(s.ca), readFileSync(s.key), readFileSync(s.cert));
  }

  it('lists and describes the services over reflection, as grpcurl does', async () => {
    const Reflection = serviceClient(reflectionProto, ['grpc', 'reflection', 'v1', 'ServerReflection']);
    const client = new Reflection(t.address, creds('viewer'));
    const call = client.ServerReflectionInfo!();
    const answers: Record<string, unknown>[] = [];
    call.on('data', (a: Record<string, unknown>) => answers.push(a));
    const ended = new Promise((resolve, reject) => {
      call.on('end', resolve);
      call.on('error', reject);
    });
    call.write({ list_services: '' });
    call.write({ file_containing_symbol: 'jiglet.v1.JobService' });
    call.end();
    await ended;
    client.close();
    const listed = (answers[0]!.list_services_response as { service: { name: string }[] }).service.map(
      (s) => s.name,
    );
    for (const service of [
      'jiglet.v1.JobService',
      'jiglet.v1.JigService',
      'jiglet.v1.ImageService',
      'jiglet.v1.LeaseService',
      'jiglet.v1.RecordService',
    ])
      assert.ok(listed.includes(service), `${service} missing from services: ${listed}`);
    assert.ok(listed.includes('grpc.health.v1.Health'), `services: ${listed}`);
    const files = (answers[1]!.file_descriptor_response as { file_descriptor_proto: Buffer[] })
      .file_descriptor_proto;
    assert.ok(
      files.some((f) => f.includes(Buffer.from('StreamOutput'))),
      'JobService descriptor is served',
    );
  });

  /** Sends reflection requests on one stream, as grpcurl does, and collects the answers in order. */
  async function reflect(requests: Record<string, unknown>[]): Promise<Record<string, unknown>[]> {
    const Reflection = serviceClient(reflectionProto, ['grpc', 'reflection', 'v1', 'ServerReflection']);
    const client = new Reflection(t.address, creds('viewer'));
    const call = client.ServerReflectionInfo!();
    const answers: Record<string, unknown>[] = [];
    call.on('data', (a: Record<string, unknown>) => answers.push(a));
    const ended = new Promise((resolve, reject) => {
      call.on('end', resolve);
      call.on('error', reject);
    });
    for (const r of requests) call.write(r);
    call.end();
    await ended;
    client.close();
    return answers;
  }

  /** The file names in a file_descriptor_response (the first field of a FileDescriptorProto). */
  function fileNames(answer: Record<string, unknown>): string[] {
    const files = (answer.file_descriptor_response as { file_descriptor_proto: Buffer[] } | undefined)
      ?.file_descriptor_proto;
    return (files ?? []).map((f) => fromBinary(FileDescriptorProtoSchema, f).name);
  }

  it('serves the real proto file names, and finds a file by its name', async () => {
    const [bySymbol, byName, health, missing] = await reflect([
      { file_containing_symbol: 'jiglet.v1.JigService' },
      { file_by_filename: 'jiglet/v1/jig.proto' },
      { file_containing_symbol: 'grpc.health.v1.Health' },
      { file_by_filename: 'jiglet_v1.proto' },
    ]);
    assert.deepEqual(fileNames(bySymbol!), ['jiglet/v1/jig.proto', 'google/protobuf/timestamp.proto']);
    assert.deepEqual(fileNames(byName!), ['jiglet/v1/jig.proto', 'google/protobuf/timestamp.proto']);
    const jig = fromBinary(
      FileDescriptorProtoSchema,
      (byName!.file_descriptor_response as { file_descriptor_proto: Buffer[] }).file_descriptor_proto[0]!,
    );
    assert.equal(jig.package, 'jiglet.v1');
    assert.deepEqual(jig.dependency, ['google/protobuf/timestamp.proto']);
    assert.ok(jig.service.some((svc) => svc.name === 'JigService'));
    assert.deepEqual(fileNames(health!), ['grpc/health/v1/health.proto']);
    // The invented merged name of proto-loader is gone.
    assert.equal((missing!.error_response as { error_code: number }).error_code, 5); // NOT_FOUND
  });

  it('serves descriptors built from the current .proto sources (npm run proto wrote them)', () => {
    const root = join(import.meta.dirname, '../..');
    const built = execFileSync(
      join(root, 'node_modules/.bin/buf'),
      ['build', 'protocol/proto', '--exclude-source-info', '-o', '-'],
      { cwd: root, maxBuffer: 16 * 1024 * 1024 },
    );
    assert.ok(
      built.equals(readFileSync(DESCRIPTOR_SET)),
      'protocol/gen/descriptor-set.binpb is stale: npm run proto',
    );
  });

  it('answers health checks for the agent and for JobService', async () => {
    const Health = serviceClient(healthProto, ['grpc', 'health', 'v1', 'Health']);
    const client = new Health(t.address, creds('viewer'));
    for (const service of ['', 'jiglet.v1.JobService']) {
      const res = await new Promise<{ status: string }>((resolve, reject) =>
        client.Check!({ service }, (err: Error | null, r: { status: string }) =>
          err ? reject(err) : resolve(r),
        ),
      );
      assert.equal(res.status, 'SERVING', service || '(agent)');
    }
    client.close();
  });

  it('refuses reflection to a client without an accepted certificate', async () => {
    const Reflection = serviceClient(reflectionProto, ['grpc', 'reflection', 'v1', 'ServerReflection']);
    const client = new Reflection(t.address, creds('norole'));
    const call = client.ServerReflectionInfo!();
    const err = await new Promise<{ code: number }>((resolve) => {
      call.on('error', resolve);
      call.on('data', () => undefined);
      call.write({ list_services: '' });
      call.end();
    });
    client.close();
    assert.equal(err.code, 7); // PERMISSION_DENIED
  });
});
