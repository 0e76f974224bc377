// The running server these tests talk to (`cargo xtask web` starts one). Missing settings fail
// the run: a test that cannot reach its server must not pass.

export function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests with \`cargo xtask web\``);
  return value;
}

export const URL = required("SOVEREIGN_URL");
export const ADMIN = {
  email: required("SOVEREIGN_ADMIN_EMAIL"),
  password: required("SOVEREIGN_ADMIN_PASSWORD"),
};
