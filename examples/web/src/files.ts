// Files: upload one (large ones go directly to the store in parts, with progress), list the
// bucket, and open a file through a short-lived signed URL (images are shown in an `<img>`).
import { SovereignError, storageCreateBucket, storageListObjects, type Sovereign } from "@sovereign/client";

type H = <K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Record<string, string>, ...children: (Node | string)[]) => HTMLElementTagNameMap[K];
type OnSubmit = (form: HTMLFormElement, action: (data: FormData) => Promise<void>) => void;

const BUCKET = "files";
const MIB = 1 << 20;

/** Creates the bucket on first use (administrators may; others are told why not). */
async function ensureBucket(sovereign: Sovereign) {
  try {
    await storageCreateBucket({ client: sovereign.client, body: { name: BUCKET } });
  } catch (error) {
    if (!(error instanceof SovereignError && (error.status === 409 || error.status === 403))) throw error;
  }
}

/** The files screen. */
export async function filesScreen(sovereign: Sovereign, h: H, onSubmit: OnSubmit, say: (text: string) => void): Promise<HTMLElement[]> {
  const progress = h("progress", { "data-testid": "upload-progress", max: "1", value: "0" });
  const list = h("ul", { "data-testid": "file-list" });
  const preview = h("img", { "data-testid": "file-preview", alt: "The chosen image", hidden: "" });
  const form = h(
    "form",
    { "data-testid": "upload" },
    h("h2", {}, "Files"),
    h("label", {}, "File ", h("input", { type: "file", name: "file", "data-testid": "file", required: "" })),
    h("button", { type: "submit" }, "Upload"),
  );

  async function show() {
    const { data } = await storageListObjects({ client: sovereign.client, path: { bucket: BUCKET } });
    list.replaceChildren(
      ...data.objects.map((object) => {
        const open = h("a", { href: "#/files", "data-key": object.key }, `${object.key} (${object.size} bytes)`);
        open.addEventListener("click", async (event) => {
          event.preventDefault();
          const url = await sovereign.files.signedUrl(BUCKET, object.key, 300);
          if (object.content_type.startsWith("image/")) {
            preview.src = url;
            preview.hidden = false;
          } else {
            window.open(url, "_blank", "noopener");
          }
        });
        return h("li", {}, open);
      }),
    );
  }

  onSubmit(form, async (data) => {
    const file = data.get("file");
    if (!(file instanceof File)) return;
    await ensureBucket(sovereign);
    progress.value = 0;
    // Past 1 MiB, directly to the store in 1 MiB parts (the server's default is 8 MiB and 16 MiB
    // parts; small values here make the parts visible).
    await sovereign.files.upload(BUCKET, file.name, file, {
      directFrom: MIB,
      partSize: MIB,
      onProgress: ({ sent, total }) => {
        progress.max = Math.max(total, 1);
        progress.value = sent;
        progress.dataset.sent = String(sent);
      },
    });
    form.reset();
    say(`Uploaded ${file.name}.`);
    await show();
  });

  await ensureBucket(sovereign);
  await show();
  return [form, progress, list, preview];
}
