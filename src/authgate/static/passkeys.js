// authgate's passkey ceremonies (WebAuthn) for /account, /login and the second step.
// A static file (the pages' CSP is script-src 'self'): no inline script, no eval. Without
// JavaScript, or in a browser without WebAuthn, the passkey controls stay hidden and every
// other form works as before.
"use strict";

(function () {
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }
  const PKC = window.PublicKeyCredential;

  // -- base64url <-> ArrayBuffer (for browsers without parse*FromJSON / toJSON) ------------

  function decode(text) {
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const raw = atob(b64 + "===".slice((b64.length + 3) % 4));
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out.buffer;
  }

  function encode(buffer) {
    const bytes = new Uint8Array(buffer);
    let raw = "";
    for (let i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map((d) => Object.assign({}, d, { id: decode(d.id) }));
  }

  function creationOptions(json) {
    if (typeof PKC.parseCreationOptionsFromJSON === "function") {
      return PKC.parseCreationOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: decode(json.challenge),
      user: Object.assign({}, json.user, { id: decode(json.user.id) }),
      excludeCredentials: descriptors(json.excludeCredentials),
    });
  }

  function requestOptions(json) {
    if (typeof PKC.parseRequestOptionsFromJSON === "function") {
      return PKC.parseRequestOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: decode(json.challenge),
      allowCredentials: descriptors(json.allowCredentials),
    });
  }

  function credentialJSON(cred) {
    if (typeof cred.toJSON === "function") {
      return cred.toJSON();
    }
    const r = cred.response;
    const response = { clientDataJSON: encode(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = encode(r.attestationObject);
      response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
    } else {
      response.authenticatorData = encode(r.authenticatorData);
      response.signature = encode(r.signature);
      if (r.userHandle) response.userHandle = encode(r.userHandle);
    }
    return {
      id: cred.id, rawId: encode(cred.rawId), type: cred.type, response: response,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults(),
    };
  }

  // -- helpers ----------------------------------------------------------------------------

  async function post(url, body, headers) {
    return fetch(url, {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: Object.assign({ "Content-Type": "application/json" }, headers || {}),
      body: JSON.stringify(body || {}),
    });
  }

  async function errorOf(response) {
    try {
      const body = await response.json();
      return body.detail || body.error || ("HTTP " + response.status);
    } catch (e) {
      return "HTTP " + response.status;
    }
  }

  function say(id, text) {
    const el = document.getElementById(id);
    if (!el) return;
    el.textContent = text;
    el.hidden = !text;
  }

  function localPath(value, fallback) {
    // the server rendered it through its next= check (a local path, or with COOKIE_DOMAIN
    // an https URL on that domain); checked again for shape: never another scheme
    if (typeof value === "string" && value.indexOf("\\") < 0 &&
        ((value.startsWith("/") && !value.startsWith("//")) || value.startsWith("https://"))) {
      return value;
    }
    return fallback;
  }

  function cancelled(err) {
    return err && (err.name === "AbortError" || err.name === "NotAllowedError");
  }

  // -- /account: "Add a passkey" ----------------------------------------------------------

  const addForm = document.getElementById("passkey-add");
  if (addForm) {
    addForm.hidden = false;
    const csrf = { "X-CSRF-Token": addForm.dataset.csrf || "" };
    addForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      say("passkey-status", "");
      try {
        let r = await post("/auth/passkeys/register/options", null, csrf);
        if (r.status === 401) {
          const body = await r.json().catch(() => ({}));
          if (body.error === "insufficient_user_authentication") {
            window.location.assign("/login?reauth=1&next=%2Faccount");
            return;
          }
        }
        if (!r.ok) {
          say("passkey-status", await errorOf(r));
          return;
        }
        const options = (await r.json()).publicKey;
        const cred = await navigator.credentials.create({ publicKey: creationOptions(options) });
        const name = addForm.querySelector("input[name=name]");
        const body = { credential: credentialJSON(cred) };
        if (name && name.value.trim()) body.name = name.value.trim();
        r = await post("/auth/passkeys/register", body, csrf);
        if (!r.ok) {
          say("passkey-status", await errorOf(r));
          return;
        }
        window.location.assign("/account?done=passkey-added");
      } catch (err) {
        say("passkey-status", cancelled(err) ? "No passkey was added." : String(err));
      }
    });
  }

  // -- /login: "Sign in with a passkey", and autofill (conditional mediation) ----------------

  const loginButton = document.getElementById("passkey-login");
  if (loginButton) {
    const box = document.getElementById("passkey-login-box");
    if (box) box.hidden = false;
    const nextField = document.querySelector("form[action='/login'] input[name=next]");
    const remember = document.querySelector("form[action='/login'] input[name=remember]");
    let controller = null;
    let pending = Promise.resolve();

    async function signIn(mediation) {
      if (controller) controller.abort();
      await pending.catch(() => undefined);  // the browser allows one request at a time
      controller = new AbortController();
      const r = await fetch("/auth/passkeys/login/options",
                            { credentials: "same-origin", cache: "no-store" });
      if (!r.ok) throw new Error(await errorOf(r));
      const options = { publicKey: requestOptions((await r.json()).publicKey),
                        signal: controller.signal };
      if (mediation) options.mediation = mediation;
      const request = navigator.credentials.get(options);
      pending = request;
      const cred = await request;
      const done = await post("/auth/passkeys/login", {
        credential: credentialJSON(cred), remember: !!(remember && remember.checked) });
      if (!done.ok) {
        say("passkey-error", "That passkey did not sign you in.");
        return;
      }
      window.location.assign(localPath(nextField && nextField.value, "/account"));
    }

    loginButton.addEventListener("click", () => {
      say("passkey-error", "");
      signIn(null).catch((err) => {
        if (!cancelled(err)) say("passkey-error", String(err.message || err));
      });
    });
    if (typeof PKC.isConditionalMediationAvailable === "function") {
      PKC.isConditionalMediationAvailable().then((available) => {
        if (available) signIn("conditional").catch(() => undefined);
      }).catch(() => undefined);
    }
  }

  // -- the second step: "Use a passkey" --------------------------------------------------------

  const mfaButton = document.getElementById("passkey-mfa");
  if (mfaButton) {
    mfaButton.hidden = false;
    const form = document.querySelector("form[action='/login/mfa']");
    mfaButton.addEventListener("click", async () => {
      say("passkey-error", "");
      const token = form.querySelector("input[name=mfa_token]").value;
      const next = form.querySelector("input[name=next]").value;
      try {
        const r = await post("/auth/passkeys/mfa/options", { mfa_token: token });
        if (!r.ok) {
          say("passkey-error", await errorOf(r));
          return;
        }
        const options = (await r.json()).publicKey;
        const cred = await navigator.credentials.get({ publicKey: requestOptions(options) });
        const done = await post("/auth/login/mfa",
                                { mfa_token: token, passkey: credentialJSON(cred) });
        if (!done.ok) {
          say("passkey-error", done.status === 401 ? "That sign-in expired. Start again."
                                                   : "That passkey was not accepted.");
          return;
        }
        window.location.assign(localPath(next, "/account"));
      } catch (err) {
        say("passkey-error", cancelled(err) ? "No passkey was used." : String(err));
      }
    });
  }
})();
