# placeholder, replaced by the agent
