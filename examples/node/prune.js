#!/usr/bin/env node
// Prune an ONNX model through the onnxprune gRPC service, from Node.js.
//
//   npm ci
//   node prune.js MODEL.onnx OUT.onnx [--server 127.0.0.1:50051] [--sparsity 0.9]
//                 [--allocation global] [--score magnitude] [--token-file F]
//
// The client is generated at run time from the public contract, proto/onnxprune/v1/pruning.proto,
// with @grpc/proto-loader. The model goes up as a header (name, size, sha256, options) followed
// by chunks of at most 1 MiB; the pruned model, its masks and the report come back in a stream.
// Writes OUT.onnx (and OUT.masks.npz) and prints the report's summary as one JSON line.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const CHUNK = 1 << 20;
const PROTO_ROOT = path.resolve(__dirname, "..", "..", "proto");

function parseArgs(argv) {
  const args = { server: "127.0.0.1:50051", sparsity: 0.9, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag.startsWith("--")) {
      const key = flag.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase());
      args[key] = argv[++i];
    } else {
      args.positional.push(flag);
    }
  }
  if (args.positional.length !== 2) {
    throw new Error("usage: node prune.js MODEL.onnx OUT.onnx [--server HOST:PORT] [--sparsity S]");
  }
  return args;
}

function loadService() {
  const definition = protoLoader.loadSync("onnxprune/v1/pruning.proto", {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // field names as in the .proto: output_name, model_data...
    longs: Number,
    defaults: false,
    oneofs: true, // each message says which member of `kind` it carries
  });
  return grpc.loadPackageDefinition(definition).onnxprune.v1.PruningService;
}

// Write what the server streams back: a FileInfo, then that file's chunks.
class Downloads {
  constructor(output) {
    this.targets = { model: output, masks: output.replace(/\.onnx$/, "") + ".masks.npz" };
    this.current = null;
  }

  open(kind, info) {
    if (!(kind in this.targets)) throw new Error(`cannot write a ${kind} file`);
    this.current = { info, fd: fs.openSync(this.targets[kind], "w"), hash: crypto.createHash("sha256"), left: Number(info.size) };
    if (this.current.left === 0) this.close();
  }

  write(chunk) {
    const file = this.current;
    if (file === null) throw new Error("a chunk arrived before its FileInfo");
    fs.writeSync(file.fd, chunk);
    file.hash.update(chunk);
    file.left -= chunk.length;
    if (file.left === 0) this.close();
  }

  close() {
    const file = this.current;
    fs.closeSync(file.fd);
    if (file.hash.digest("hex") !== file.info.sha256) throw new Error(`${file.info.name}: sha256 mismatch`);
    this.current = null;
  }
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const [modelPath, output] = args.positional;
  const model = fs.readFileSync(modelPath);
  const PruningService = loadService();
  const client = new PruningService(args.server, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (args.tokenFile) {
    metadata.set("authorization", `Bearer ${fs.readFileSync(args.tokenFile, "utf8").trim()}`);
  }

  const call = client.Prune(metadata);
  const downloads = new Downloads(output);
  let result = null;
  call.on("data", (message) => {
    switch (message.kind) {
      case "progress":
        process.stderr.write(`${message.progress.stage} ${((message.progress.fraction || 0) * 100).toFixed(0)}%\n`);
        break;
      case "model":
      case "masks":
        downloads.open(message.kind, message[message.kind]);
        break;
      case "chunk":
        downloads.write(message.chunk);
        break;
      case "result":
        result = message.result;
        break;
      default:
        throw new Error(`unexpected message ${message.kind}`);
    }
  });
  call.on("error", (error) => {
    console.error(`${grpc.status[error.code]}: ${error.details}`);
    process.exitCode = error.code === grpc.status.INVALID_ARGUMENT ? 2 : 1;
  });
  call.on("end", () => {
    if (result === null) return;
    const report = JSON.parse(result.report.json);
    console.log(JSON.stringify({
      output,
      direct_sparsity: report.direct_sparsity,
      effective_sparsity: report.effective_sparsity,
      warnings: result.warnings || [],
    }));
    client.close();
  });

  const options = { sparsity: Number(args.sparsity) };
  if (args.allocation) options.allocation = args.allocation;
  if (args.score) options.score = args.score;
  call.write({
    header: {
      model: {
        name: path.basename(modelPath),
        size: model.length,
        sha256: crypto.createHash("sha256").update(model).digest("hex"),
      },
      options,
      output_name: path.basename(output),
    },
  });
  for (let offset = 0; offset < model.length; offset += CHUNK) {
    call.write({ chunk: model.subarray(offset, offset + CHUNK) });
  }
  call.end();
}

main();
