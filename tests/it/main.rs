mod cron_oracle;
