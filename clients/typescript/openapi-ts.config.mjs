// The generated part of the client: types, one function per operation and the fetch client,
// from the committed OpenAPI document. `cargo xtask openapi` runs this; `--check` generates into
// a scratch folder (SOVEREIGN_CLIENT_OUT) and compares it with src/generated.
export default {
  input: process.env.SOVEREIGN_OPENAPI ?? "../../docs/openapi.json",
  output: {
    path: process.env.SOVEREIGN_CLIENT_OUT ?? "src/generated",
    postProcess: [],
    importFileExtension: ".js",
  },
  logs: { file: false },
  plugins: [
    "@hey-api/typescript",
    { name: "@hey-api/sdk", auth: true },
    { name: "@hey-api/client-fetch", throwOnError: true },
  ],
};
