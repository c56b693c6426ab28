import { loadConfig, type PluginConfig } from "../../plugin/compose/config.js";

/** The configuration `env` gives; throws with loadConfig's reason when it is refused. */
export function config(env: Record<string, string>): PluginConfig {
  const c = loadConfig(env);
  if (!c.ok) throw new Error(c.error);
  return c.value;
}

/** Why loadConfig refuses `env`; throws when it is accepted. */
export function refusal(env: Record<string, string>): string {
  const c = loadConfig(env);
  if (c.ok) throw new Error(`accepted ${JSON.stringify(env)}`);
  return c.error;
}
