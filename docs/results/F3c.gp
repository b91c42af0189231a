# F3c: Characteristic times t_1 (α^2 L = 0.5) and t_2 (L = 0) (fc softplus L=5 mnist n=5000 hinge mu=1000) (written by lazyfeat report; data inline)
set encoding utf8
$P0S0 << EOD
0.001 0.01794528257 0.0006154522582
0.0022 0.03126202524 0.001058234983
0.0046 0.08236100322 0.004378486433
0.01 0.1736775293 0.008963546134
0.022 0.3252711175 0.02547364293
0.046 0.6246049224 0.06667440958
0.1 1.436720291 0.1381354674
0.22 3.001613475 0.3098666016
1 7.69959829 0.1435537423
10 17.38306446 3.744963057
100 13.04098517 0.4586211461
1000 15.71615184 3.051362349
EOD
$P0S1 << EOD
0.001 0.1573936693 0.02009265062
0.0022 0.4982938619 0.06231544025
0.0046 1.210106728 0.03817098444
0.01 4.076966464 0.2327435226
0.022 17.21044629 1.744473578
0.046 42.59310807 1.169832009
0.1 130.5635354 5.04651103
0.22 515.6882226 27.39971055
1 5224.970099 367.5766155
10 168415.5145 7037.522375
100 760475.2732 89305.50235
1000 1099717.273 176634.0639
EOD
$P1S0 << EOD
0.01 0.01794528257 0.0006154522582
0.022 0.03126202524 0.001058234983
0.046 0.08236100322 0.004378486433
0.1 0.1736775293 0.008963546134
0.22 0.3252711175 0.02547364293
0.46 0.6246049224 0.06667440958
1 1.436720291 0.1381354674
2.2 3.001613475 0.3098666016
10 7.69959829 0.1435537423
100 17.38306446 3.744963057
1000 13.04098517 0.4586211461
10000 15.71615184 3.051362349
EOD
$P1S1 << EOD
0.01 0.1573936693 0.02009265062
0.022 0.4982938619 0.06231544025
0.046 1.210106728 0.03817098444
0.1 4.076966464 0.2327435226
0.22 17.21044629 1.744473578
0.46 42.59310807 1.169832009
1 130.5635354 5.04651103
2.2 515.6882226 27.39971055
10 5224.970099 367.5766155
100 168415.5145 7037.522375
1000 760475.2732 89305.50235
10000 1099717.273 176634.0639
EOD
set terminal pngcairo enhanced size 1120,440 font 'DejaVu Sans,10'
set output "/work/main/docs/results.new/F3c.png"
set multiplot layout 1,2
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title "vs α"
set xlabel "α"
set ylabel "t"
set logscale x; set format x '10^{%L}'
set logscale y; set format y '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P0S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "t₁ h=100", \
     $P0S1 using 1:2:3 with yerrorlines lt 2 pt 2 ps 0.7 title "t₂ h=100"
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title "vs √h α"
set xlabel "√h α"
set ylabel "t"
set logscale x; set format x '10^{%L}'
set logscale y; set format y '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P1S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "t₁ h=100", \
     $P1S1 using 1:2:3 with yerrorlines lt 2 pt 2 ps 0.7 title "t₂ h=100"
unset multiplot
set terminal svg enhanced size 1120,440 font 'DejaVu Sans,10' background '#ffffff'
set output "/work/main/docs/results.new/F3c.svg"
set multiplot layout 1,2
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title "vs α"
set xlabel "α"
set ylabel "t"
set logscale x; set format x '10^{%L}'
set logscale y; set format y '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P0S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "t₁ h=100", \
     $P0S1 using 1:2:3 with yerrorlines lt 2 pt 2 ps 0.7 title "t₂ h=100"
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title "vs √h α"
set xlabel "√h α"
set ylabel "t"
set logscale x; set format x '10^{%L}'
set logscale y; set format y '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P1S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "t₁ h=100", \
     $P1S1 using 1:2:3 with yerrorlines lt 2 pt 2 ps 0.7 title "t₂ h=100"
unset multiplot
unset output
