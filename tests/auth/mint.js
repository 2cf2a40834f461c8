// Mints one JWT with Node's jsonwebtoken (tests/integration/test_auth.py):
//   node mint.js ALG KEYFILE CLAIMS_JSON  -> the token on stdout
// KEYFILE holds the HS256 secret or the PEM private key.
const fs = require("fs");
const jwt = require("jsonwebtoken");
const [alg, keyFile, claims] = process.argv.slice(2);
const key = fs.readFileSync(keyFile);
process.stdout.write(jwt.sign(JSON.parse(claims), key, { algorithm: alg, noTimestamp: true }));
