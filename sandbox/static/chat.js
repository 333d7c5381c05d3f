// The sandbox web chat: plays a Telegram user against the emulated bot via /sandbox/* routes.
// Bot text is rendered from its entities with DOM nodes only (never innerHTML), so whatever a
// bot sends can show formatting but can never inject markup or scripts.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { user: null, cursor: 0, polling: 0, rendered: new Map() };

async function request(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

const postJson = (path, body) =>
  request(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

// Formatting

const SAFE_LINK = /^(https?:|tg:|mailto:)/i;

function elementFor(entity, text) {
  const simple = { bold: "strong", italic: "em", underline: "u", strikethrough: "s", code: "code" };
  if (simple[entity.type]) return document.createElement(simple[entity.type]);
  if (entity.type === "pre") {
    const pre = document.createElement("pre");
    pre.append(document.createElement("code"));
    return pre;
  }
  if (entity.type === "blockquote" || entity.type === "expandable_blockquote") {
    return document.createElement("blockquote");
  }
  if (entity.type === "spoiler") {
    const span = document.createElement("span");
    span.className = "spoiler";
    span.addEventListener("click", () => span.classList.add("revealed"));
    return span;
  }
  const url = entity.type === "text_link" ? entity.url
    : entity.type === "url" ? text.substr(entity.offset, entity.length) : null;
  if (url && SAFE_LINK.test(url)) {
    const link = document.createElement("a");
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    return link;
  }
  const span = document.createElement("span");
  if (entity.type === "bot_command") {
    span.className = "command";
    span.addEventListener("click", () => sendText(text.substr(entity.offset, entity.length)));
  }
  return span;
}

// Entity offsets are UTF-16 units, which is exactly how JavaScript indexes strings.
function renderFormatted(text, entities) {
  const sorted = [...(entities || [])].sort((a, b) => a.offset - b.offset || b.length - a.length);
  const fragment = document.createDocumentFragment();
  build(fragment, 0, text.length, sorted);
  return fragment;

  function build(parent, start, end, list) {
    let position = start;
    let index = 0;
    while (index < list.length) {
      const entity = list[index++];
      const from = Math.max(entity.offset, position);
      const to = Math.min(entity.offset + entity.length, end);
      if (from >= to) continue;
      if (from > position) parent.append(text.slice(position, from));
      const inner = [];
      while (index < list.length && list[index].offset < to) inner.push(list[index++]);
      const element = elementFor(entity, text);
      parent.append(element);
      build(element.querySelector("code") || element, from, to, inner);
      position = to;
    }
    if (position < end) parent.append(text.slice(position, end));
  }
}

// Messages

function formatSize(bytes) {
  return bytes < 1024 ? `${bytes} B` : bytes < 1048576 ? `${(bytes / 1024).toFixed(1)} KB` : `${(bytes / 1048576).toFixed(1)} MB`;
}

function renderKeyboard(markup, messageId) {
  const rows = markup && (markup.inline_keyboard || markup.keyboard);
  if (!rows || !rows.length) return null;
  const keyboard = document.createElement("div");
  keyboard.className = markup.inline_keyboard ? "keyboard" : "keyboard reply";
  for (const row of rows) {
    const line = document.createElement("div");
    line.className = "row";
    for (const button of row) {
      const label = typeof button === "string" ? button : button.text;
      let control;
      if (button.url && SAFE_LINK.test(button.url)) {
        control = document.createElement("a");
        control.href = button.url;
        control.target = "_blank";
        control.rel = "noopener noreferrer";
      } else {
        control = document.createElement("button");
        control.type = "button";
        control.addEventListener("click", () =>
          markup.inline_keyboard ? click(messageId, button.callback_data || "") : sendText(label));
      }
      control.textContent = label;
      line.append(control);
    }
    keyboard.append(line);
  }
  return keyboard;
}

function renderMessage(message) {
  const existing = state.rendered.get(message.message_id);
  if (message.deleted) {
    if (existing) existing.remove();
    state.rendered.delete(message.message_id);
    return;
  }
  const item = document.createElement("div");
  item.className = `message ${message.from}`;
  item.dataset.messageId = message.message_id;
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  if (message.photo) {
    const image = document.createElement("img");
    image.src = message.photo.url;
    image.alt = "photo";
    image.loading = "lazy";
    bubble.append(image);
  }
  if (message.document) {
    const link = document.createElement("a");
    link.className = "document";
    link.href = message.document.url;
    link.download = message.document.file_name;
    const icon = document.createElement("span");
    icon.className = "icon";
    icon.textContent = "⬇";
    const name = document.createElement("span");
    name.textContent = `${message.document.file_name} · ${formatSize(message.document.file_size)}`;
    link.append(icon, name);
    bubble.append(link);
  }
  const text = message.text ?? message.caption;
  if (text) {
    const body = document.createElement("div");
    body.className = "text";
    body.append(renderFormatted(text, message.text != null ? message.entities : message.caption_entities));
    bubble.append(body);
  }
  const meta = document.createElement("div");
  meta.className = "meta";
  const time = new Date((message.edit_date || message.date) * 1000);
  meta.textContent = `${message.edited ? "edited " : ""}${time.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`;
  bubble.append(meta);
  item.append(bubble);
  const keyboard = renderKeyboard(message.reply_markup, message.message_id);
  if (keyboard) item.append(keyboard);

  const list = $("messages");
  if (existing) {
    existing.replaceWith(item);
  } else {
    const later = [...state.rendered.entries()].filter(([id]) => id > message.message_id).sort(([a], [b]) => a - b)[0];
    later ? list.insertBefore(item, later[1]) : list.append(item);
    list.scrollTop = list.scrollHeight;
  }
  state.rendered.set(message.message_id, item);
}

let toastTimer = 0;
function showToast(text, alert) {
  const toast = $("toast");
  toast.textContent = text;
  toast.className = alert ? "toast alert" : "toast";
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toast.hidden = true; }, alert ? 6000 : 2500);
}

// Conversation

async function poll(generation) {
  while (generation === state.polling) {
    try {
      const chat = await request(`/sandbox/chat/${state.user.id}?since=${state.cursor}&timeout=${state.cursor ? 25 : 0}`);
      if (generation !== state.polling) return;
      state.cursor = chat.cursor;
      chat.messages.forEach(renderMessage);
      for (const answer of chat.callback_answers) if (answer.text) showToast(answer.text, answer.show_alert);
    } catch (error) {
      showToast(`Connection problem: ${error.message}`);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

async function sendText(text) {
  if (!text.trim() || !state.user) return;
  try {
    await postJson("/sandbox/send", { user_id: state.user.id, text });
  } catch (error) {
    showToast(error.message, true);
  }
}

async function click(messageId, data) {
  try {
    await postJson("/sandbox/click", { user_id: state.user.id, message_id: messageId, data });
  } catch (error) {
    showToast(error.message, true);
  }
}

async function upload(file) {
  const form = new FormData();
  form.append("user_id", state.user.id);
  form.append("file", file, file.name);
  const caption = $("text-input").value.trim();
  if (caption) form.append("caption", caption);
  try {
    await request("/sandbox/upload", { method: "POST", body: form });
    $("text-input").value = "";
  } catch (error) {
    showToast(error.message, true);
  }
}

// Users

function useUser(user) {
  state.user = user;
  state.cursor = 0;
  state.polling += 1;
  state.rendered.clear();
  $("messages").replaceChildren();
  localStorage.setItem("sandbox-user", JSON.stringify(user));
  $("who").textContent = `you are ${user.first_name}${user.username ? " @" + user.username : ""} · id ${user.id}`;
  $("user-panel").hidden = true;
  $("composer").hidden = false;
  $("text-input").focus();
  poll(state.polling);
}

async function showUserPanel() {
  $("user-panel").hidden = false;
  const { users } = await request("/sandbox/users");
  const known = $("known-users");
  known.replaceChildren();
  for (const user of users) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `${user.first_name} · ${user.id}`;
    button.addEventListener("click", () => useUser(user));
    known.append(button);
  }
}

$("user-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = Object.fromEntries(form.entries());
  body.id = Number(body.id);
  try {
    useUser(await postJson("/sandbox/users", body));
  } catch (error) {
    showToast(error.message, true);
  }
});

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("text-input");
  sendText(input.value);
  input.value = "";
});

$("file-input").addEventListener("change", (event) => {
  const [file] = event.target.files;
  if (file) upload(file);
  event.target.value = "";
});

$("switch-user").addEventListener("click", showUserPanel);

(async function start() {
  request("/sandbox/bot").then((bot) => { $("bot-name").textContent = `@${bot.username}`; }).catch(() => {});
  const saved = JSON.parse(localStorage.getItem("sandbox-user") || "null");
  const { users } = await request("/sandbox/users");
  const stillThere = saved && users.find((user) => user.id === saved.id);
  if (stillThere) useUser(stillThere); else showUserPanel();
})();
