// Runs GGUF files with llama.cpp (the build node-llama-cpp ships) and prints,
// as one JSON list: for each job, llama.cpp's tokens for its prompt text and
// the greedy continuation of its prompt ids — in f32 throughout (weights as
// stored, keys and values cached in f32, no flash attention) so that an f32
// export can be compared token for token.
//   node llama_cpp_check.mjs JOBS.json
// JOBS.json: [{"model": "a.gguf", "text": "ROMEO:", "ids": [1, 2], "steps": 64}, ...]; a job with
// "lora": "adapter.gguf" applies that LoRA adapter over the model at scale 1.
import {readFileSync} from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const jobs = JSON.parse(readFileSync(process.argv[2], "utf8"));
const llama = await getLlama({
    gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true, progressLogs: false,
    logLevel: LlamaLogLevel.error,
});
const results = [];
for (const job of jobs) {
    const model = await llama.loadModel({modelPath: job.model, gpuLayers: 0});
    // specialTokens false: the text is text ("<s>" stays characters), and no BOS is added.
    const tokens = Array.from(model.tokenize(job.text, false));
    const context = await model.createContext({
        contextSize: Math.min(model.trainContextSize, job.ids.length + job.steps + 8), threads: 2,
        flashAttention: false, experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
        ...(job.lora ? {lora: {adapters: [{filePath: job.lora, scale: 1}]}} : {}),
    });
    const sequence = context.getSequence();
    const continuation = [];
    for await (const token of sequence.evaluate(job.ids, {temperature: 0})) {
        continuation.push(token);
        if (continuation.length >= job.steps) break;
    }
    results.push({tokens, continuation, architecture: model.fileInfo?.metadata?.general?.architecture ?? null});
    await context.dispose();
    await model.dispose();
}
console.log(JSON.stringify(results));
await llama.dispose();
