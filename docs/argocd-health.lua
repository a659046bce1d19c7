-- Argo CD health check for mediaconvert.operators.dev/MediaConvertJob.
-- Healthy once the job completed; Degraded when it is Invalid, failed or was
-- canceled; Progressing while it is validated, queued or transcoding, and
-- while the operator has not yet seen the latest spec.
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick the job up"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local phase = status.phase
if phase == "Complete" then
  hs.status = "Healthy"
  hs.message = "MediaConvert job " .. (status.jobId or "") .. " completed"
  return hs
end

if phase == "Invalid" or phase == "Error" or phase == "Canceled" then
  local failed = condition(status, "Failed")
  hs.status = "Degraded"
  if failed ~= nil and failed.message ~= nil and failed.message ~= "" then
    hs.message = failed.reason .. ": " .. failed.message
  else
    hs.message = phase .. ": " .. (status.errorMessage or "no message")
  end
  return hs
end

hs.status = "Progressing"
if status.jobPercentComplete ~= nil then
  hs.message = phase .. " (" .. status.jobPercentComplete .. "%)"
else
  hs.message = phase
end
return hs
