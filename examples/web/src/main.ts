// The example app: plain DOM, the Sovereign client only. Screens are hash routes.
import {
  createSovereign,
  localStorageStorage,
  MfaRequiredError,
  NetworkError,
  SovereignError,
  vectorCreate,
  vectorSearch,
  vectorUpsert,
  type CloseInfo,
  type Message,
  type Realtime,
  type Subscription,
} from "@sovereign/client";
import { factorsSection, qrCode } from "./factors";
import { filesScreen } from "./files";
import { passkeysSection } from "./passkeys";
import "./style.css";

// `?api=` names the server (kept for the tab, as a provider sign-in comes back without it).
const api =
  new URLSearchParams(location.search).get("api") ??
  sessionStorage.getItem("sovereign.example.api") ??
  import.meta.env.VITE_SOVEREIGN_URL ??
  "http://127.0.0.1:8000";
sessionStorage.setItem("sovereign.example.api", api);
/** Where providers send the browser back to: one of the server's redirect URLs, exactly. */
const RETURN_TO = `${location.origin}/`;
const sovereign = createSovereign({ url: api, storage: localStorageStorage("sovereign.example") });
const realtime: Realtime = sovereign.realtime();
const ROOM = "public:lobby";
const NOTES = "notes";

// For the browser tests and the devtools console.
Object.assign(window, { sovereign, realtime });

const app = document.querySelector<HTMLElement>("#app")!;
const nav = document.querySelector<HTMLElement>("#nav")!;
const status = document.querySelector<HTMLElement>("#status")!;

/** `h("button", { type: "submit" }, "Save")`: an element with attributes and children. */
function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, value);
  element.append(...children);
  return element;
}

function say(text: string, kind: "info" | "error" = "info") {
  status.textContent = text;
  status.dataset.kind = kind;
}

/** Errors as the client types them: the server's code and request id, or "offline". */
function explain(error: unknown): string {
  if (error instanceof SovereignError) {
    const fields = error.fields.map((f) => `${f.field}: ${f.message}`).join("; ");
    const wait = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : "";
    return `${error.detail}${fields ? ` (${fields})` : ""}${wait} [${error.code}, request ${error.requestId ?? "?"}]`;
  }
  if (error instanceof NetworkError) return "The server cannot be reached. Check your connection.";
  return String(error);
}

/** Runs a form's action with its button disabled, reporting errors in the status line. */
function onSubmit(form: HTMLFormElement, action: (data: FormData) => Promise<void>) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    try {
      await action(new FormData(form));
    } catch (error) {
      say(explain(error), "error");
    } finally {
      if (button) button.disabled = false;
    }
  });
}

function field(name: string, label: string, type = "text", value = ""): HTMLLabelElement {
  return h("label", {}, label, h("input", { name, type, value, required: "", "data-testid": name }));
}

// --- screens ---------------------------------------------------------------------------------

function signInScreen() {
  const signIn = h("form", { "data-testid": "sign-in" }, h("h2", {}, "Sign in"), field("email", "Email", "email"), field("password", "Password", "password"), h("button", { type: "submit" }, "Sign in"));
  onSubmit(signIn, async (data) => {
    try {
      await sovereign.auth.signIn({ email: String(data.get("email")), password: String(data.get("password")) });
    } catch (error) {
      if (!(error instanceof MfaRequiredError)) throw error;
      return error.enrolmentRequired ? enrolmentScreen(error.challenge) : secondFactorScreen(error.challenge);
    }
    say("Signed in.");
    location.hash = "#/profile";
  });
  const signUp = h("form", { "data-testid": "sign-up" }, h("h2", {}, "Create an account"), field("full_name", "Name"), field("email", "Email", "email"), field("password", "Password (12 characters or more)", "password"), h("button", { type: "submit" }, "Sign up"));
  onSubmit(signUp, async (data) => {
    const email = String(data.get("email"));
    const password = String(data.get("password"));
    await sovereign.auth.register({ email, password, full_name: String(data.get("full_name")) });
    try {
      await sovereign.auth.signIn({ email, password });
    } catch (error) {
      // The tenant may require a second factor of every account, new ones included.
      if (!(error instanceof MfaRequiredError && error.enrolmentRequired)) throw error;
      return enrolmentScreen(error.challenge);
    }
    say("Welcome!");
    location.hash = "#/profile";
  });
  const passkey = h("button", { type: "button", "data-testid": "passkey-sign-in" }, "Sign in with a passkey");
  passkey.addEventListener("click", async () => {
    try {
      await sovereign.auth.signInWithPasskey();
      say("Signed in.");
      location.hash = "#/profile";
      void route();
    } catch (error) {
      say(explain(error), "error");
    }
  });
  const providers = h("div", { "data-testid": "providers", class: "providers" }, passkey);
  app.replaceChildren(h("div", { class: "columns" }, signIn, signUp), providers);
  sovereign.auth
    .providers()
    .then((list) => {
      providers.replaceChildren(
        h("h2", {}, "Or continue with"),
        passkey,
        ...list.map((p) => {
          const button = h("button", { type: "button", "data-testid": `provider-${p.slug}` }, p.name);
          button.addEventListener("click", () => location.assign(sovereign.auth.providerSignInUrl(p.slug, RETURN_TO)));
          return button;
        }),
      );
    })
    .catch((error: unknown) => say(explain(error), "error"));
}

/**
 * Back from a provider: `?code=` is exchanged for a session (or a second-factor challenge),
 * `?error=` shown. Either way the parameters leave the address bar at once.
 */
async function finishProviderSignIn(): Promise<boolean> {
  const params = new URLSearchParams(location.search);
  const code = params.get("code");
  const error = params.get("error");
  if (!code && !error) return false;
  history.replaceState(null, "", location.pathname + location.hash);
  if (error) {
    say(params.get("error_description") ?? error, "error");
    return false;
  }
  try {
    await sovereign.auth.completeProviderSignIn(code!);
    say("Signed in.");
    return false;
  } catch (failure) {
    if (!(failure instanceof MfaRequiredError)) {
      say(explain(failure), "error");
      return false;
    }
    if (failure.enrolmentRequired) await enrolmentScreen(failure.challenge);
    else secondFactorScreen(failure.challenge);
    return true;
  }
}

/** A sign-in the tenant lets through only with a second factor, for an account without one. */
async function enrolmentScreen(challenge: string) {
  const enrolment = await sovereign.auth.enrolWithChallenge(challenge);
  const form = h(
    "form",
    { "data-testid": "enrol-factor" },
    h("h2", {}, "Add an authenticator to sign in"),
    h("p", {}, "This workspace requires two-step sign-in. Scan the code with your authenticator app, then enter the code it shows."),
    qrCode(enrolment.otpauth_uri),
    h("code", { "data-testid": "totp-secret" }, enrolment.secret),
    h("label", {}, "Code", h("input", { name: "code", inputmode: "numeric", autocomplete: "one-time-code", required: "", "data-testid": "code" })),
    h("button", { type: "submit" }, "Continue"),
  );
  onSubmit(form, async (data) => {
    const { recoveryCodes } = await sovereign.auth.confirmEnrolment(challenge, String(data.get("code")).trim());
    const done = h("button", { type: "button", "data-testid": "recovery-done" }, "I have saved them");
    done.addEventListener("click", () => {
      location.hash = "#/profile";
      void route();
    });
    app.replaceChildren(
      h(
        "section",
        {},
        h("h2", {}, "Recovery codes"),
        h("p", {}, "Each works once if you lose your phone. Keep them somewhere safe; they are not shown again."),
        h("ol", { "data-testid": "recovery-codes" }, ...recoveryCodes.map((c) => h("li", {}, c))),
        done,
      ),
    );
    say("Signed in.");
  });
  app.replaceChildren(form);
}

/** The second step of a sign-in: a code from the authenticator app, or a recovery code. */
function secondFactorScreen(challenge: string) {
  const form = h(
    "form",
    { "data-testid": "second-factor" },
    h("h2", {}, "Two-step sign-in"),
    h("p", {}, "Enter the code from your authenticator app, or one of your recovery codes."),
    h("label", {}, "Code", h("input", { name: "code", autocomplete: "one-time-code", required: "", "data-testid": "code" })),
    h("button", { type: "submit" }, "Continue"),
  );
  onSubmit(form, async (data) => {
    const code = String(data.get("code")).trim();
    await sovereign.auth.completeSignIn(/^\d{6}$/.test(code) ? { challenge, code } : { challenge, recovery_code: code });
    say("Signed in.");
    location.hash = "#/profile";
    void route();
  });
  app.replaceChildren(form);
}

async function profileScreen() {
  const me = await sovereign.auth.me();
  const assurance = me.authentication ? ` · ${me.authentication.aal} (${me.authentication.amr.join(", ")})` : "";
  const form = h("form", { "data-testid": "profile" }, h("h2", {}, "Profile"), h("p", { "data-testid": "whoami" }, `${me.email} · ${me.role}${me.email_verified ? " · verified" : ""}${assurance}`), field("full_name", "Name", "text", me.full_name), h("button", { type: "submit" }, "Save"));
  onSubmit(form, async (data) => {
    const updated = await sovereign.auth.updateProfile({ full_name: String(data.get("full_name")) });
    say(`Saved: ${updated.full_name}`);
  });
  app.replaceChildren(form, await factorsSection(sovereign, h, onSubmit, say), await passkeysSection(sovereign, h, say, explain));
}

async function sessionsScreen() {
  const sessions = await sovereign.auth.sessions();
  const list = h("ul", { "data-testid": "sessions" });
  for (const session of sessions) {
    const revoke = h("button", { type: "button" }, session.current ? "Sign out here" : "Revoke");
    revoke.addEventListener("click", async () => {
      try {
        await sovereign.auth.revokeSession(session.id);
        say("Session ended.");
        if (!session.current) void sessionsScreen();
      } catch (error) {
        say(explain(error), "error");
      }
    });
    list.append(h("li", {}, `${session.user_agent.slice(0, 60)} · since ${new Date(session.created_at).toLocaleString()}${session.current ? " (this one)" : ""} `, revoke));
  }
  app.replaceChildren(h("h2", {}, "Sessions"), list);
}

async function notesScreen() {
  const results = h("ol", { "data-testid": "note-results" });
  const add = h("form", { "data-testid": "add-note" }, h("h2", {}, "Notes"), field("note", "New note"), h("button", { type: "submit" }, "Add"));
  onSubmit(add, async (data) => {
    const text = String(data.get("note"));
    await ensureNotes();
    await vectorUpsert({ client: sovereign.client, path: { name: NOTES }, body: { points: [{ id: crypto.randomUUID(), text, payload: { text } }] } });
    add.reset();
    say("Note added.");
  });
  const search = h("form", { "data-testid": "search-notes" }, field("query", "Search by meaning"), h("button", { type: "submit" }, "Search"));
  onSubmit(search, async (data) => {
    const { data: found } = await vectorSearch({ client: sovereign.client, path: { name: NOTES }, body: { text: String(data.get("query")), limit: 5, with_payload: true } });
    results.replaceChildren(...found.results.map((r) => h("li", {}, `${String((r.payload as { text?: string } | null)?.text ?? r.id)} (${r.score.toFixed(3)})`)));
  });
  app.replaceChildren(add, search, results);
}

/** Creates the notes collection on first use (administrators may; others are told why not). */
async function ensureNotes() {
  try {
    await vectorCreate({ client: sovereign.client, body: { name: NOTES, dimension: 384 } });
  } catch (error) {
    if (!(error instanceof SovereignError && error.status === 409)) throw error;
  }
}

let room: Subscription | undefined;
const roomLog = h("ol", { "data-testid": "room-log" });
const people = h("ul", { "data-testid": "room-people" });
/** The realtime connection's state, always in the header. */
const roomState = document.querySelector<HTMLElement>("#connection")!;

function joinRoom() {
  if (room) return;
  room = realtime.subscribe(
    ROOM,
    {
      onMessage: (message: Message) => {
        const text = String((message.payload as { text?: unknown })?.text ?? "");
        roomLog.append(h("li", { "data-offset": String(message.offset) }, text));
      },
      onRecovery: (recovery) => {
        if (!recovery.recovered) {
          roomLog.append(h("li", { class: "gap", "data-testid": "room-gap" }, "Some messages were missed while offline."));
        }
      },
      onPresence: () => void showPeople(),
    },
    { presence: true },
  );
  void room.ready.then(showPeople);
}

async function showPeople() {
  const users = await realtime.presence(ROOM);
  people.replaceChildren(...users.map((u) => h("li", { "data-user": u.user }, `${u.user === realtime.user ? "you" : u.user.slice(0, 8)} (${u.connections})`)));
}

function roomScreen() {
  const form = h("form", { "data-testid": "room-send" }, field("message", "Message"), h("button", { type: "submit" }, "Send"));
  onSubmit(form, async (data) => {
    await realtime.publish(ROOM, { text: String(data.get("message")) });
    form.reset();
  });
  app.replaceChildren(h("h2", {}, "Live room"), h("h3", {}, "Here now"), people, h("h3", {}, "Messages"), roomLog, form);
  joinRoom();
}

realtime.onState((state) => {
  roomState.textContent = state === "idle" ? "" : `realtime: ${state}`;
  roomState.dataset.state = state;
});
realtime.onClose((info: CloseInfo) => {
  roomState.dataset.closed = info.reason;
  roomState.dataset.code = String(info.code);
  if (info.signInAgain) say(`Realtime closed: ${info.reason}. Sign in again.`, "error");
});

// --- routing ---------------------------------------------------------------------------------

const screens: Record<string, () => void | Promise<void>> = {
  "#/profile": profileScreen,
  "#/sessions": sessionsScreen,
  "#/notes": notesScreen,
  "#/files": async () => app.replaceChildren(...(await filesScreen(sovereign, h, onSubmit, say))),
  "#/room": roomScreen,
};

async function route() {
  const signedIn = (await sovereign.auth.session()) !== null;
  nav.hidden = !signedIn;
  if (!signedIn) {
    // The server closes this session's socket itself (close code 4001, "session_ended").
    room?.unsubscribe().catch(() => {});
    room = undefined;
    roomLog.replaceChildren();
    return signInScreen();
  }
  if (realtime.state === "idle" || realtime.state === "closed") {
    realtime.connect().catch((error: unknown) => say(explain(error), "error"));
  }
  const screen = screens[location.hash] ?? profileScreen;
  try {
    await screen();
    document.body.dataset.screen = location.hash || "#/profile";
  } catch (error) {
    say(explain(error), "error");
  }
}

document.querySelector("#sign-out")!.addEventListener("click", async () => {
  try {
    await sovereign.auth.signOut();
  } catch (error) {
    say(explain(error), "error");
  }
});
sovereign.auth.onChange((event) => {
  if (event.type === "signed_out") {
    say(event.reason === "sign_out" ? "Signed out." : "Your session ended. Sign in again.");
    location.hash = "";
    void route();
  }
});
window.addEventListener("hashchange", () => void route());
void finishProviderSignIn().then((waiting) => {
  if (!waiting) void route();
});
