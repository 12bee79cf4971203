// The BullMQ side of `just bench-queue`.
//
// The Rust harness (bench/src/bin/bench-queue.rs) runs this script once per phase, against the
// redis-server it started, and reads the last line of stdout: one JSON report with the phase's
// wall time and this process's peak RSS. Redis command counts are taken by the harness from
// INFO commandstats, so this script only does the work and times it.
//
//   node queue.mjs push      --url redis://127.0.0.1:PORT/ --jobs N --in-flight 32
//   node queue.mjs push-bulk --url ... --jobs N --chunk 1000
//   node queue.mjs drain     --url ... --jobs N --concurrency C
//
// BullMQ runs in its default configuration (default job options: completed jobs are kept, as
// BullMQ does unless told otherwise); the only settings are the worker's concurrency and
// ioredis's `maxRetriesPerRequest: null`, which BullMQ requires for a worker connection.

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Queue, Worker } from 'bullmq';

const QUEUE_NAME = 'bench';
// A drain that sees no completed job for this long has stalled; report it instead of hanging.
const STALL_LIMIT_MS = 30_000;

function parseArgs(argv) {
  const [phase, ...rest] = argv;
  const options = {};
  for (let index = 0; index < rest.length; index += 2) {
    const name = rest[index];
    const value = rest[index + 1];
    if (!name.startsWith('--') || value === undefined) {
      throw new Error(`expected --name value pairs, got ${JSON.stringify(rest)}`);
    }
    options[name.slice(2)] = value;
  }
  const number = (name, fallback) => {
    const raw = options[name] ?? fallback;
    const parsed = Number.parseInt(raw, 10);
    if (!Number.isFinite(parsed) || parsed <= 0) {
      throw new Error(`--${name} must be a positive integer, got ${raw}`);
    }
    return parsed;
  };
  if (!options.url) {
    throw new Error('--url is required');
  }
  return {
    phase,
    url: new URL(options.url),
    jobs: number('jobs'),
    inFlight: number('in-flight', '32'),
    chunk: number('chunk', '1000'),
    concurrency: number('concurrency', '50'),
  };
}

function connectionOptions(url) {
  return {
    host: url.hostname,
    port: Number.parseInt(url.port || '6379', 10),
    maxRetriesPerRequest: null,
  };
}

// Peak resident set size of this process, from the kernel's high-water mark.
function peakRssMib() {
  const status = readFileSync('/proc/self/status', 'utf8');
  const line = status.split('\n').find((entry) => entry.startsWith('VmHWM:'));
  const kib = line ? Number.parseInt(line.replace(/[^0-9]/g, ''), 10) : Number.NaN;
  return kib / 1024;
}

// Wall and CPU time (user + system, all threads) of the measured work.
function startStopwatch() {
  const started = performance.now();
  const cpuAtStart = process.cpuUsage();
  return {
    stop() {
      const cpu = process.cpuUsage(cpuAtStart);
      return {
        seconds: (performance.now() - started) / 1000,
        cpu_seconds: (cpu.user + cpu.system) / 1e6,
      };
    },
  };
}

async function push(args) {
  const queue = new Queue(QUEUE_NAME, { connection: connectionOptions(args.url) });
  await queue.waitUntilReady();
  let next = 0;
  // Each of the `inFlight` loops pushes one job at a time, so at most that many adds are in
  // flight on the connection at once.
  const loop = async () => {
    while (next < args.jobs) {
      const n = next;
      next += 1;
      await queue.add('noop', { n });
    }
  };
  const stopwatch = startStopwatch();
  await Promise.all(Array.from({ length: args.inFlight }, loop));
  const timing = stopwatch.stop();
  await queue.close();
  return { jobs: args.jobs, ...timing, in_flight: args.inFlight };
}

async function pushBulk(args) {
  const queue = new Queue(QUEUE_NAME, { connection: connectionOptions(args.url) });
  await queue.waitUntilReady();
  const stopwatch = startStopwatch();
  for (let first = 0; first < args.jobs; first += args.chunk) {
    const last = Math.min(first + args.chunk, args.jobs);
    const batch = [];
    for (let n = first; n < last; n += 1) {
      batch.push({ name: 'noop', data: { n } });
    }
    await queue.addBulk(batch);
  }
  const timing = stopwatch.stop();
  await queue.close();
  return { jobs: args.jobs, ...timing, chunk: args.chunk };
}

async function drain(args) {
  const connection = connectionOptions(args.url);
  let completed = 0;
  let failed = 0;
  let lastProgress = performance.now();
  let resolveDone;
  const done = new Promise((resolve) => {
    resolveDone = resolve;
  });
  const stopwatch = startStopwatch();
  const worker = new Worker(QUEUE_NAME, async () => {}, {
    connection,
    concurrency: args.concurrency,
  });
  worker.on('completed', () => {
    completed += 1;
    lastProgress = performance.now();
    if (completed + failed >= args.jobs) {
      resolveDone(null);
    }
  });
  worker.on('failed', () => {
    failed += 1;
    lastProgress = performance.now();
    if (completed + failed >= args.jobs) {
      resolveDone(null);
    }
  });
  worker.on('error', (error) => {
    console.error(`bullmq worker error: ${error}`);
  });
  const watchdog = setInterval(() => {
    if (performance.now() - lastProgress > STALL_LIMIT_MS) {
      resolveDone(`stalled: no job finished for ${STALL_LIMIT_MS / 1000} s`);
    }
  }, 1000);
  const stall = await done;
  clearInterval(watchdog);
  await worker.close();
  const timing = stopwatch.stop();

  // Check the backlog is really gone, outside the timed part.
  const queue = new Queue(QUEUE_NAME, { connection });
  const counts = await queue.getJobCounts('wait', 'active', 'delayed', 'prioritized', 'paused');
  await queue.close();
  const leftInQueue = Object.values(counts).reduce((sum, count) => sum + count, 0);

  const report = {
    jobs: args.jobs,
    ...timing,
    concurrency: args.concurrency,
    handled: completed + failed,
    failed,
    left_in_queue: leftInQueue,
  };
  if (stall) {
    report.error = stall;
  } else if (failed > 0) {
    report.error = `${failed} jobs failed`;
  }
  return report;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let report;
  switch (args.phase) {
    case 'push':
      report = await push(args);
      break;
    case 'push-bulk':
      report = await pushBulk(args);
      break;
    case 'drain':
      report = await drain(args);
      break;
    default:
      throw new Error(`unknown phase ${args.phase}: expected push, push-bulk or drain`);
  }
  report.peak_rss_mib = peakRssMib();
  report.version = JSON.parse(
    readFileSync(new URL('./node_modules/bullmq/package.json', import.meta.url), 'utf8'),
  ).version;
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
