# authentik: Customization > Property Mappings > Create > Webhook Mapping, named "Zeckta relay".
# The SMS authenticator stage (provider "Generic") posts what this expression returns to its External
# API URL. authentik gives it `device` (device.phone_number, E.164), `token` (the code) and `stage`.
return {
    "dest": device.phone_number,
    "src": "ACME",  # an APPROVED sender name of your workspace
    "text": f"Your Acme sign-in code is {token}. It expires in 5 minutes.",
    "purpose": "LOGIN",
}
