"""Users and sign-in: accounts, server-side sessions, password resets (made by ``petrock generate auth``)."""
