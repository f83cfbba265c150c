"""What both roles' HTTP layers share: selector and time parsing, error answers, routes, ping, docs,
client-address resolution. No models; imports nothing of collector/ or node/."""
