"""Words too common to be key terms: English function words, words every
technical text uses, and markup or code noise."""

STOPWORDS = frozenset("""
a able about above according across actually add added adding after afterwards again against
all allow allows almost alone along already also although always am among amongst an and
another answer any anyhow anyone anything anyway anywhere approach are around as at available
back based basic be became because become becomes becoming been before beforehand behind being
below beside besides best better between beyond bool both but by can cannot case cases certain
change changes class clear com come comes common consider considered const contain contains
could current currently data def default define defined describe described detail details did
different do doc docs does doesn doing done down during each easy either elif else elsewhere
end enough ensure enum especially etc even ever every everyone everything everywhere example
examples except fact fairly false few find first fn following follows for form former formerly
from full function functions further general generally get gets getting gif give given gives go
goes going good got great group had hand handle happen happens has have having he hence her
here hereafter hereby herein hers herself high him himself his how however href htm html http
https i idea ie if img impl import important in include included includes including indeed
information instead int into is issue issues it item items its itself jpg just keep kind know
known large last later latter latterly least less let level like likely line lines list long
look lot lots low made main make makes making many may maybe me mean means meanwhile might mind
mine more moreover most mostly much must mut my myself namely need needed needs neither net
never nevertheless new next nil no nobody none noone nor not note notes nothing now nowhere
null number of off often on once one only onto or order org original other others otherwise our
ours ourselves out over overall own page pages part particular pdf per perhaps please png point
points possible print probably problem problems provide provided provides pub put question
quite rather re really reason reasons regarding rel related require required requires result
results return returns right said same say says second section see seem seemed seeming seems
set sets several she short should show shown shows side similar simple simply since small
so some somehow someone something sometime sometimes somewhere sort specific src state still
str string struct such sure svg system take taken term terms text than that the their theirs
them themselves then thence there thereafter thereby therefore therein thereupon these they
thing things this those though three through throughout thru thus time times to today together
too toward towards true two type types under until up upon url us use used uses using usually
value values var version very via void want wants was way ways we well were what whatever when
whence whenever where whereafter whereas whereby wherein whereupon wherever whether which while
whither who whoever whole whom whose why will with within without work works would write
written www yes yet you your yours yourself yourselves zero
""".split())
