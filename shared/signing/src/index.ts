export {
  PublicKeyEntry,
  Jwks,
  PrivateKeyFile,
  REGISTRY_FILE,
  DEFAULT_IDENTITIES,
  keyFileName,
  NatsCredentials,
  natsCredentialsFileName,
  readNatsCredentials,
  ADMIN_NATS_USER,
  generateIdentity,
  initKeyDir,
  readJwks,
  readPrivateKeyFile,
  revokeKey,
  type Identity,
  type InitKeysResult,
} from "./keys.js";
export {
  KeyRegistry,
  Signer,
  keyInEffect,
  type KeyTimeRefusal,
  type RegisteredKey,
  type Opened,
} from "./registry.js";
export { ed25519, type Ed25519, type SigningKey, type VerifyingKey } from "./ed25519.js";
