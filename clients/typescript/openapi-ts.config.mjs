// The generated part of the client: types, one function per operation and the fetch client,
// from the committed OpenAPI document. `cargo xtask openapi` runs this; `--check` compares.
export default {
  input: "../../docs/openapi.json",
  output: { path: "src/generated", postProcess: [], importFileExtension: ".js" },
  logs: { file: false },
  plugins: [
    "@hey-api/typescript",
    { name: "@hey-api/sdk", auth: true },
    { name: "@hey-api/client-fetch", throwOnError: true },
  ],
};
