// Two-step sign-in in the profile screen: add an authenticator (QR code drawn here, from the
// otpauth:// URI, with no external service), confirm it, keep the recovery codes, remove it.
import { encode } from "uqr";
import type { Sovereign } from "@sovereign/client";

type H = <K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Record<string, string>, ...children: (Node | string)[]) => HTMLElementTagNameMap[K];

const SVG = "http://www.w3.org/2000/svg";

/** The QR code of `text` as an SVG element, one square per dark module. */
export function qrCode(text: string): SVGSVGElement {
  const { data, size } = encode(text, { border: 2 });
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${size} ${size}`);
  svg.setAttribute("width", "180");
  svg.setAttribute("height", "180");
  svg.setAttribute("shape-rendering", "crispEdges");
  svg.setAttribute("data-testid", "totp-qr");
  const background = document.createElementNS(SVG, "rect");
  background.setAttribute("width", String(size));
  background.setAttribute("height", String(size));
  background.setAttribute("fill", "#fff");
  svg.append(background);
  data.forEach((row, y) =>
    row.forEach((dark, x) => {
      if (!dark) return;
      const cell = document.createElementNS(SVG, "rect");
      cell.setAttribute("x", String(x));
      cell.setAttribute("y", String(y));
      cell.setAttribute("width", "1");
      cell.setAttribute("height", "1");
      svg.append(cell);
    }),
  );
  return svg;
}

/** The "Two-step sign-in" section of the profile screen. */
export async function factorsSection(
  sovereign: Sovereign,
  h: H,
  onSubmit: (form: HTMLFormElement, action: (data: FormData) => Promise<void>) => void,
  say: (text: string) => void,
): Promise<HTMLElement> {
  const section = h("section", { "data-testid": "factors" }, h("h2", {}, "Two-step sign-in"));
  const { factors, recovery_codes_remaining } = await sovereign.auth.factors();
  const confirmed = factors.filter((f) => f.confirmed);
  const list = h("ul");
  for (const factor of confirmed) {
    const remove = h("button", { type: "button" }, "Remove");
    remove.addEventListener("click", async () => {
      await sovereign.auth.removeFactor(factor.id).catch((error: unknown) => say(String((error as Error).message)));
      section.replaceWith(await factorsSection(sovereign, h, onSubmit, say));
    });
    list.append(h("li", { "data-testid": "factor" }, `${factor.name} `, remove));
  }
  if (confirmed.length > 0) {
    section.append(list, h("p", { "data-testid": "recovery-remaining" }, `${recovery_codes_remaining} recovery codes left.`));
  }
  const add = h("button", { type: "button", "data-testid": "add-authenticator" }, "Add an authenticator app");
  add.addEventListener("click", async () => {
    const enrolment = await sovereign.auth.enrolTotp("Authenticator app");
    const confirm = h(
      "form",
      { "data-testid": "confirm-totp" },
      h("p", {}, "Scan this code with your authenticator app, or type the key, then enter the code it shows."),
      qrCode(enrolment.otpauth_uri),
      h("code", { "data-testid": "totp-secret" }, enrolment.secret),
      h("label", {}, "Code", h("input", { name: "code", inputmode: "numeric", autocomplete: "one-time-code", required: "", "data-testid": "code" })),
      h("button", { type: "submit" }, "Confirm"),
    );
    onSubmit(confirm, async (data) => {
      const { recovery_codes } = await sovereign.auth.confirmFactor(enrolment.id, String(data.get("code")));
      const next = await factorsSection(sovereign, h, onSubmit, say);
      if (recovery_codes) {
        next.append(
          h("p", {}, "Recovery codes — each works once if you lose your phone. Keep them somewhere safe; they are not shown again."),
          h("ol", { "data-testid": "recovery-codes" }, ...recovery_codes.map((c) => h("li", {}, c))),
        );
      }
      section.replaceWith(next);
      say("Authenticator added.");
    });
    add.replaceWith(confirm);
  });
  section.append(add);
  return section;
}
