// Key Vault in RBAC mode holding the app's secrets. App settings reference them as
// @Microsoft.KeyVault(SecretUri=<vaultUri>secrets/<name>) (no version: the latest is used), resolved with
// the app's managed identity (Key Vault Secrets User, assigned in roles.bicep).
//
// A secret parameter left empty is not written, so a re-deployment without it keeps the value already in
// the vault (set it once with deploy.sh's environment variables or `az keyvault secret set`).

@description('Azure region.')
param location string

@description('Vault name (3-24 chars, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Key Vault secret names (letters, digits, hyphens): { m365ClientSecret, botAppSecret, stateSigningKey, notifyCert }.')
param vaultEntryNames object

@description('Value for M365_CLIENT_SECRET; empty = leave the vault as it is.')
@secure()
param m365ClientSecret string = ''

@description('Value for BOT_APP_SECRET; empty = leave the vault as it is.')
@secure()
param botAppSecret string = ''

@description('Value for STATE_SIGNING_KEY; empty = leave the vault as it is.')
@secure()
param stateSigningKey string = ''

@description('Value for NOTIFY_CERT_PEM (PEM certificate + RSA private key); empty = leave the vault as it is.')
@secure()
param notifyCertPem string = ''

@description('Purge protection cannot be turned off again once on.')
param enablePurgeProtection bool = true

param tags object = {}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: enablePurgeProtection ? true : null
    enabledForDeployment: false
    enabledForTemplateDeployment: false
    enabledForDiskEncryption: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource m365ClientSecretValue 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(m365ClientSecret)) {
  parent: vault
  name: vaultEntryNames.m365ClientSecret
  properties: {
    value: m365ClientSecret
    contentType: 'text/plain'
  }
}

resource botAppSecretValue 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(botAppSecret)) {
  parent: vault
  name: vaultEntryNames.botAppSecret
  properties: {
    value: botAppSecret
    contentType: 'text/plain'
  }
}

resource stateSigningKeyValue 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(stateSigningKey)) {
  parent: vault
  name: vaultEntryNames.stateSigningKey
  properties: {
    value: stateSigningKey
    contentType: 'text/plain'
  }
}

// The rich-notification certificate. A Key Vault certificate of the same name (content type
// application/x-pem-file) serves as well: its secret holds the same PEM; then leave notifyCertPem empty.
resource notifyCertValue 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(notifyCertPem)) {
  parent: vault
  name: vaultEntryNames.notifyCert
  properties: {
    value: notifyCertPem
    contentType: 'application/x-pem-file'
  }
}

output name string = vault.name
output id string = vault.id
output vaultUri string = vault.properties.vaultUri
