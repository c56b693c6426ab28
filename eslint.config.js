// typescript-eslint's type-checked rules: they see what the compiler sees, so
// they catch what syntax rules cannot — a floating promise (a teardown step
// nobody awaits), an object interpolated into an error message (that is how
// four "[object Object]" messages were found), a needless assertion.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "test/bench/results/**", "**/*.js", "**/*.cjs", "**/*.mjs"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { project: ["./tsconfig.check.json"], tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Methods that implement a Promise-returning port (Store, Datapath) are
      // async even when one implementation has nothing to wait for.
      "@typescript-eslint/require-await": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
    },
  },
  {
    files: ["test/**/*.ts", "**/*.test.ts"],
    rules: {
      // expect.any()/expect.objectContaining() are typed `any` by vitest.
      "@typescript-eslint/no-unsafe-assignment": "off",
    },
  },
);
