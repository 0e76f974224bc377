// Passkeys in the profile screen: add one (the browser's authenticator asks the user to verify),
// list, remove. Signing in with one is a button on the sign-in screen.
import type { Sovereign } from "@sovereign/client";

type H = <K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Record<string, string>, ...children: (Node | string)[]) => HTMLElementTagNameMap[K];

/** The "Passkeys" section of the profile screen. */
export async function passkeysSection(sovereign: Sovereign, h: H, say: (text: string, kind?: "info" | "error") => void, explain: (error: unknown) => string): Promise<HTMLElement> {
  const section = h("section", { "data-testid": "passkeys" }, h("h2", {}, "Passkeys"));
  const list = h("ul");
  for (const passkey of await sovereign.auth.passkeys()) {
    const remove = h("button", { type: "button" }, "Remove");
    remove.addEventListener("click", async () => {
      try {
        await sovereign.auth.removePasskey(passkey.id);
      } catch (error) {
        say(explain(error), "error");
      }
      section.replaceWith(await passkeysSection(sovereign, h, say, explain));
    });
    list.append(h("li", { "data-testid": "passkey" }, `${passkey.name} `, remove));
  }
  const add = h("button", { type: "button", "data-testid": "add-passkey" }, "Add a passkey");
  add.addEventListener("click", async () => {
    try {
      await sovereign.auth.addPasskey("This device");
      say("Passkey added.");
      section.replaceWith(await passkeysSection(sovereign, h, say, explain));
    } catch (error) {
      say(explain(error), "error");
    }
  });
  section.append(list, add);
  return section;
}
