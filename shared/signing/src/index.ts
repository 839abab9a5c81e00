export {
  PublicKeyEntry,
  Jwks,
  PrivateKeyFile,
  REGISTRY_FILE,
  DEFAULT_IDENTITIES,
  keyFileName,
  generateIdentity,
  initKeyDir,
  readJwks,
  readPrivateKeyFile,
  revokeKey,
  type Identity,
  type InitKeysResult,
} from "./keys.js";
export { KeyRegistry, Signer, type RegisteredKey, type Opened } from "./registry.js";
