-- Auto-routing rule of the compose PACS: every stable MR series goes to LDH Assist (modality "ldh"), except what
-- LDH Assist itself sent back (its SEG / SR / preview would otherwise loop). The node applies its own routing
-- rules (lumbar, sagittal, enough slices) to what arrives, so this rule stays coarse on purpose.
LDH_MODALITY = 'ldh'
LDH_AET = 'LDHASSIST'

function OnStableSeries(seriesId, tags, metadata)
  if tags['Modality'] ~= 'MR' then
    return
  end
  local instances = ParseJson(RestApiGet('/series/' .. seriesId .. '/instances'))
  if #instances == 0 then
    return
  end
  -- an instance uploaded over REST has no RemoteAET: pcall keeps that from aborting the rule
  local known, sender = pcall(RestApiGet, '/instances/' .. instances[1]['ID'] .. '/metadata/RemoteAET')
  if known and sender == LDH_AET then
    return
  end
  print('autoroute: series ' .. tags['SeriesInstanceUID'] .. ' -> ' .. LDH_MODALITY)
  SendToModality(seriesId, LDH_MODALITY)
end
