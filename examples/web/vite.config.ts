import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The app imports the client from its source in this repository (an app of your own would
// `npm install` the package instead). Everything it loads comes from the build: no CDN.
export default defineConfig({
  resolve: {
    alias: {
      "@sovereign/client": fileURLToPath(new URL("../../clients/typescript/src/index.ts", import.meta.url)),
    },
  },
  server: { host: "127.0.0.1", port: 5173, strictPort: true },
  preview: { host: "127.0.0.1", port: 5173, strictPort: true },
  build: { target: "es2022", sourcemap: false },
});
