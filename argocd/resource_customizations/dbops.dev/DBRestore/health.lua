-- Argo CD health check for dbops.dev/DBRestore and DBAttach (Lua 5.1, as Argo CD's gopher-lua runs it).
-- One script for both kinds (DBAttach/health.lua links here): their status has the same shape.
-- Healthy when Available, Progressing while dbops works on it, Degraded when Failed or Degraded (the
-- database exists but is not usable as asked); the message is the Ready condition's (with its reason
-- then), as `kubectl get dbrestore -o yaml` shows it.
local hs = {}
local working = { "Pending", "Restoring", "Verifying", "Attaching", "Deleting" }

local function ready_condition(status)
  if status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      return condition
    end
  end
  return nil
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for dbops to accept the " .. (obj.kind or "object")
  return hs
end

local status = obj.status
local ready = ready_condition(status)
local message = ""
if ready ~= nil and ready.message ~= nil then
  message = ready.message
end

-- A spec change dbops has not seen yet: whatever the phase says is about the previous spec.
if obj.metadata ~= nil and obj.metadata.generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for dbops to observe generation " .. tostring(obj.metadata.generation)
  return hs
end

local phase = status.phase
if phase == "Available" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end
if phase == "Failed" or phase == "Degraded" then
  hs.status = "Degraded"
  if ready ~= nil and ready.reason ~= nil and ready.reason ~= "" then
    hs.message = ready.reason .. ": " .. message
  else
    hs.message = message
  end
  return hs
end
for _, p in ipairs(working) do
  if phase == p then
    hs.status = "Progressing"
    hs.message = phase .. ": " .. message
    return hs
  end
end
if phase == "Expired" then
  -- A preview database whose ttl passed: removed on purpose, the object kept as a record.
  hs.status = "Suspended"
  hs.message = message
  return hs
end
hs.status = "Unknown"
hs.message = "unknown phase " .. tostring(phase)
return hs
