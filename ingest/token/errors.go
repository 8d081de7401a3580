package token

import "errors"

var (
	// ErrNoKeys means a Keyring was built without any key.
	ErrNoKeys = errors.New("token: no signing keys (set LEADSTREAM_TOKEN_KEYS to kid:secret,…)")
	// ErrBadKey means a key id or secret is unusable.
	ErrBadKey = errors.New("token: bad key")
	// ErrMalformed means the token is not KID.CLAIMS.SIGNATURE in base64url.
	ErrMalformed = errors.New("token: malformed")
	// ErrUnknownKey means no key of the keyring has the token's key id
	// (forged, or signed with a key that was retired).
	ErrUnknownKey = errors.New("token: unknown key id")
	// ErrBadSignature means the MAC does not match: forged or altered.
	ErrBadSignature = errors.New("token: bad signature")
	// ErrBadClaims means the claims miss a required field or carry a bad URL.
	ErrBadClaims = errors.New("token: bad claims")
	// ErrExpired means the token is genuine but past its expiry: it no
	// longer counts (Verify still returns its claims).
	ErrExpired = errors.New("token: expired")
)
